import Foundation

// Disk image format inspection while the data streams in, after oslo.utils' format_inspector (the
// code Glance runs on every upload): each inspector keeps only the few regions of the stream it needs
// (a header, a descriptor, the last sectors), so memory stays flat whatever the image size, and the
// data is never read a second time. Pure computation: the upload path, and later stage and
// web-download, feed it chunks.

/// A byte range of the stream an inspector wants; `minLength` makes it usable before it is full.
struct CaptureRegion {
    var offset: Int64
    var length: Int
    var minLength: Int?
    /// Keeps the *last* `length` bytes of the stream instead (a footer), complete at the end only.
    var fromEnd = false
    var data: [UInt8] = []
    var streamEnded = false

    init(_ offset: Int64, _ length: Int, minLength: Int? = nil) {
        self.offset = offset
        self.length = length
        self.minLength = minLength
    }

    static func add(_ a: Int64, _ b: Int) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(Int64(b))
        return overflow ? (a < 0 ? Int64.min : Int64.max) : sum
    }

    static func end(_ length: Int) -> CaptureRegion {
        var region = CaptureRegion(0, length)
        region.fromEnd = true
        return region
    }

    var complete: Bool {
        if fromEnd { return streamEnded && data.count == length }
        if let minLength { return data.count >= minLength }
        return data.count == length
    }

    /// Whether this region still takes bytes (a min-length region keeps filling up to `length`).
    var wantsMore: Bool { fromEnd || data.count < length }

    /// `chunk` holds the stream's bytes `[end - chunk.count, end)`.
    mutating func capture(_ chunk: UnsafeRawBufferPointer, end: Int64) {
        if fromEnd {
            data.append(contentsOf: chunk.suffix(length))
            if data.count > length { data.removeFirst(data.count - length) }
            return
        }
        let start = end - Int64(chunk.count)
        // Offsets come from the image's own headers: saturate instead of overflowing on hostile values.
        let from = max(Self.add(offset, data.count), start)
        let to = min(Self.add(offset, length), end)
        guard from < to else { return }
        data.append(contentsOf: chunk[Int(from - start)..<Int(to - start)])
    }
}

/// A failed parse: the stream is not this format (the inspector stops looking).
struct FormatParseError: Error { var reason: String }

/// One format's inspector (oslo's `FileInspector`).
class FormatProbe {
    class var name: String { "raw" }
    var regions: [String: CaptureRegion] = [:]
    var total: Int64 = 0
    var finished = false

    var formatMatches: Bool { true }
    var virtualSize: Int64 { total }
    var complete: Bool { regions.values.allSatisfy(\.complete) }
    /// Names of failed safety checks, each with why (empty: safe).
    func safetyFailures() -> [String] { [] }

    /// Hooks: after each chunk (may add regions), and once per region when it completes.
    func postProcess() throws {}
    func regionCompleted(_ name: String) throws {}

    final func eat(_ chunk: UnsafeRawBufferPointer) throws {
        // Steady state of a long upload: every region is captured, so a chunk only moves the position.
        if regions.values.allSatisfy({ !$0.wantsMore }) {
            total += Int64(chunk.count)
            return
        }
        let before = regions.mapValues { [$0.offset, Int64($0.length)] }
        var completeBefore = Set(regions.filter { $0.value.complete }.keys)
        total += Int64(chunk.count)
        capture(chunk, only: nil)
        try postProcess()
        // Regions added (or replaced: same name, other place) now may lie (partly) in this very chunk.
        let added = Set(regions.keys.filter { before[$0] != [regions[$0]!.offset, Int64(regions[$0]!.length)] })
        if !added.isEmpty {
            completeBefore.subtract(added)
            capture(chunk, only: added)
        }
        for name in regions.filter({ $0.value.complete }).keys.sorted() where !completeBefore.contains(name) {
            try regionCompleted(name)
        }
    }

    private func capture(_ chunk: UnsafeRawBufferPointer, only: Set<String>?) {
        // Keys first: iterating the dictionary while mutating its values would copy every captured region.
        for name in Array(regions.keys) where only?.contains(name) ?? true {
            if regions[name]!.wantsMore { regions[name]!.capture(chunk, end: total) }
        }
    }

    func finish() throws {
        finished = true
        for name in Array(regions.keys) where regions[name]!.fromEnd { regions[name]!.streamEnded = true }
    }

    final func region(_ name: String) -> [UInt8] { regions[name]?.data ?? [] }
}

// MARK: Byte helpers

extension Array where Element == UInt8 {
    func bigEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        guard offset >= 0, offset + MemoryLayout<T>.size <= count else { return 0 }
        return self[offset..<offset + MemoryLayout<T>.size].reduce(T(0)) { $0 << 8 | T($1) }
    }

    func littleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        guard offset >= 0, offset + MemoryLayout<T>.size <= count else { return 0 }
        return self[offset..<offset + MemoryLayout<T>.size].reversed().reduce(T(0)) { $0 << 8 | T($1) }
    }

    func starts(with text: String) -> Bool { starts(with: Array(text.utf8)) }
}

// MARK: Formats

/// qcow2: 72-byte big-endian header. Refused: a backing file or an external data file (both make qemu
/// read host files: OSSA-2024-001), unknown incompatible features, versions other than 2 and 3.
final class QcowProbe: FormatProbe {
    override class var name: String { "qcow2" }
    override init() {
        super.init()
        regions["header"] = CaptureRegion(0, 512)
    }
    override var formatMatches: Bool { regions["header"]!.complete && region("header").starts(with: [0x51, 0x46, 0x49, 0xFB]) }
    override var virtualSize: Int64 { formatMatches ? Int64(bitPattern: region("header").bigEndian(UInt64.self, at: 24)) : 0 }
    override func safetyFailures() -> [String] {
        let header = region("header")
        var failures: [String] = []
        if header.bigEndian(UInt64.self, at: 8) != 0 { failures.append("backing_file (the image has a backing file)") }
        let features = header.bigEndian(UInt64.self, at: 0x48)
        // Incompatible feature bit 2: external data file.
        if features & 0x4 != 0 { failures.append("data_file (the image has an external data file)") }
        switch header.bigEndian(UInt32.self, at: 4) {
        case 2: break
        case 3: if features & ~UInt64(0xF) != 0 { failures.append("unknown_features (unknown incompatible qcow2 features)") }
        default: failures.append("unknown_features (unsupported qcow2 version)")
        }
        return failures
    }
}

/// QED: recognised only to be refused (no user of ours supports it).
final class QEDProbe: FormatProbe {
    override class var name: String { "qed" }
    override init() {
        super.init()
        regions["header"] = CaptureRegion(0, 512)
    }
    override var formatMatches: Bool { regions["header"]!.complete && region("header").starts(with: "QED\0") }
    override func safetyFailures() -> [String] { ["banned (this file format is not allowed)"] }
}

/// VHD (qemu's vpc): the footer copy at the start of dynamic disks, big-endian current size at 40.
final class VHDProbe: FormatProbe {
    override class var name: String { "vhd" }
    override init() {
        super.init()
        regions["header"] = CaptureRegion(0, 512)
    }
    override var formatMatches: Bool { region("header").starts(with: "conectix") }
    override var virtualSize: Int64 {
        regions["header"]!.complete && formatMatches ? Int64(bitPattern: region("header").bigEndian(UInt64.self, at: 40)) : 0
    }
}

/// VHDX: the region table at 192 KiB points to the metadata region, whose table points to the
/// virtual disk size item.
final class VHDXProbe: FormatProbe {
    override class var name: String { "vhdx" }
    static let metadataRegion = "8B7CA206-4790-4B9A-B8FE-575F050F886E"
    static let virtualDiskSize = "2FA54224-CD1B-4876-B211-5DBED83BF4B8"
    static let maxTable = 32 * 2048

    override init() {
        super.init()
        regions["ident"] = CaptureRegion(0, 32)
        regions["header"] = CaptureRegion(192 * 1024, 64 * 1024)
    }
    override var formatMatches: Bool { region("ident").starts(with: "vhdxfile") }
    override var virtualSize: Int64 {
        guard let vds = regions["vds"], vds.complete else { return 0 }
        return Int64(bitPattern: vds.data.littleEndian(UInt64.self, at: 0))
    }

    static func guid(_ b: ArraySlice<UInt8>) -> String {
        let a = Array(b)
        guard a.count == 16 else { return "" }
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02X", $0) }.joined() }
        return
            "\(String(format: "%08X", a.littleEndian(UInt32.self, at: 0)))-\(String(format: "%04X", a.littleEndian(UInt16.self, at: 4)))-\(String(format: "%04X", a.littleEndian(UInt16.self, at: 6)))-\(hex(Array(a[8..<10])))-\(hex(Array(a[10..<16])))"
    }

    override func postProcess() throws {
        if regions["header"]!.complete, regions["metadata"] == nil {
            let header = region("header")
            guard header.littleEndian(UInt32.self, at: 0) == 0x6967_6572 else {
                throw FormatParseError(reason: "VHDX region signature not found")
            }
            let count = Int(header.littleEndian(UInt32.self, at: 8))
            guard count < 2048 else { throw FormatParseError(reason: "VHDX region count \(count) (limit 2047)") }
            for i in 0..<count {
                let start = 16 + i * 32
                guard start + 32 <= header.count else { break }
                if Self.guid(header[start..<start + 16]) == Self.metadataRegion {
                    let offset = Int64(bitPattern: header.littleEndian(UInt64.self, at: start + 16))
                    regions["metadata"] = CaptureRegion(offset, Self.maxTable)
                    return
                }
            }
        } else if let metadata = regions["metadata"], regions["vds"] == nil {
            let table = metadata.data
            guard table.count >= 32 else { return }
            guard table.starts(with: "metadata") else { throw FormatParseError(reason: "invalid VHDX metadata signature") }
            let count = Int(table.littleEndian(UInt16.self, at: 10))
            // oslo's order: a table longer than the region is waited for (and never read), not an error.
            guard table.count >= 32 + count * 32 else { return }
            guard count < 2048 else { throw FormatParseError(reason: "VHDX metadata item count \(count) (limit 2047)") }
            for i in 0..<count {
                let entry = 32 + i * 32
                if Self.guid(table[entry..<entry + 16]) == Self.virtualDiskSize {
                    let itemOffset = Int64(table.littleEndian(UInt32.self, at: entry + 16))
                    let itemLength = min(Int(table.littleEndian(UInt32.self, at: entry + 20)), Self.maxTable)
                    // The table has what it needs: stop capturing it.
                    regions["metadata"]!.length = table.count
                    regions["vds"] = CaptureRegion(CaptureRegion.add(metadata.offset, Int(itemOffset)), itemLength)
                    return
                }
            }
        }
    }
}

/// VMDK: only the single-file sparse subformats (monolithicSparse, streamOptimized) are accepted, and
/// their descriptor may name no extent file outside the image (a path would make qemu open host files).
final class VMDKProbe: FormatProbe {
    override class var name: String { "vmdk" }
    static let descriptorOffset: Int64 = 0x200
    static let descriptorMax = (1 << 20) - 1
    static let grainDirectoryAtEnd = UInt64.max
    var descriptorText: String?
    var subformat: String?

    override init() {
        super.init()
        regions["header"] = CaptureRegion(0, 512, minLength: 64)
        regions["descriptor"] = CaptureRegion(0, Self.descriptorMax, minLength: 4)
    }

    override func postProcess() throws {
        guard let header = regions["header"], header.complete else { return }
        let data = header.data
        let signature = Array(data.prefix(4))
        if signature != Array("KDMV".utf8) {
            // A text descriptor file (monolithicFlat and friends): no binary header. Text as oslo's
            // ASCII `isprintable() or isspace()`: printables, \t \n \v \f \r and the separators 0x1C-0x1F.
            let isText = data.allSatisfy { (0x09...0x0D).contains($0) || (0x1C...0x7E).contains($0) }
            if isText {
                regions["header"] = nil
                return
            }
            throw FormatParseError(reason: "VMDK signature KDMV not found")
        }
        let version = data.littleEndian(UInt32.self, at: 4)
        guard (1...3).contains(version) else { throw FormatParseError(reason: "unsupported VMDK version \(version)") }
        let descriptorSector = data.littleEndian(UInt64.self, at: 28)
        let descriptorSectors = data.littleEndian(UInt64.self, at: 36)
        let grainDirectory = data.littleEndian(UInt64.self, at: 56)
        if grainDirectory == Self.grainDirectoryAtEnd, regions["footer"] == nil {
            regions["footer"] = .end(1536)
        }
        guard descriptorSector == UInt64(Self.descriptorOffset) / 512 else { throw FormatParseError(reason: "wrong VMDK descriptor location") }
        if regions["descriptor"]?.offset == 0 {
            let size = Int(
                min(
                    descriptorSectors.multipliedReportingOverflow(by: 512).overflow ? UInt64.max : descriptorSectors * 512,
                    UInt64(Self.descriptorMax)))
            regions["descriptor"] = CaptureRegion(Self.descriptorOffset, size)
        }
    }

    override func regionCompleted(_ name: String) throws {
        if name == "descriptor" { parseDescriptor() }
    }

    override func finish() throws {
        try super.finish()
        if descriptorText == nil, regions["descriptor"]?.data.isEmpty == false { parseDescriptor() }
    }

    private func parseDescriptor() {
        var data = region("descriptor")
        if let nul = data.firstIndex(of: 0) { data = Array(data[..<nul]) }
        guard data.allSatisfy({ $0 < 0x80 }), let text = String(bytes: data, encoding: .ascii)?.lowercased() else { return }
        descriptorText = text
        subformat = "formatnotfound"
        if let start = text.range(of: "createtype=\"") {
            let rest = text[start.upperBound...]
            if let end = rest.firstIndex(of: "\""), rest.distance(from: rest.startIndex, to: end) < 64 {
                subformat = String(rest[..<end])
            }
        }
    }

    override var formatMatches: Bool {
        if regions["header"] != nil { return region("header").starts(with: "KDMV") }
        return subformat != nil && subformat != "formatnotfound"
    }

    override var virtualSize: Int64 {
        guard descriptorText != nil, ["monolithicsparse", "streamoptimized"].contains(subformat ?? "") else { return 0 }
        return Int64(bitPattern: region("header").littleEndian(UInt64.self, at: 12) &* 512)
    }

    override func safetyFailures() -> [String] {
        var failures: [String] = []
        if let problem = descriptorProblem() { failures.append("descriptor (\(problem))") }
        if regions["footer"] != nil, let problem = footerProblem() { failures.append("footer (\(problem))") }
        return failures
    }

    private func descriptorProblem() -> String? {
        guard let text = descriptorText else { return "no descriptor found" }
        guard ["monolithicsparse", "streamoptimized"].contains(subformat ?? "") else { return "unsupported subformat \(subformat ?? "")" }
        var extents: [String] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix("ddb") { continue }
            if let eq = line.firstIndex(of: "="), !line[..<eq].contains(" ") { continue }
            if ["rw", "rdonly", "noaccess"].contains(String(line.split(separator: " ").first ?? "")) {
                extents.append(line)
                continue
            }
            return "invalid descriptor line"
        }
        if extents.contains(where: { $0.contains("/") }) { return "extent file names outside the image" }
        if extents.isEmpty { return "no extents" }
        return nil
    }

    private func footerProblem() -> String? {
        let footer = region("footer")
        guard footer.count == 1536 else { return "footer missing" }
        let header = region("header")
        let trailer = Array(footer[512..<1024])
        if Array(header.prefix(4)) != Array(trailer.prefix(4)) { return "header and footer signatures differ" }
        if header.littleEndian(UInt32.self, at: 4) != trailer.littleEndian(UInt32.self, at: 4) { return "header and footer versions differ" }
        if header.littleEndian(UInt64.self, at: 28) != trailer.littleEndian(UInt64.self, at: 28)
            || header.littleEndian(UInt64.self, at: 36) != trailer.littleEndian(UInt64.self, at: 36)
        {
            return "footer names another descriptor"
        }
        if trailer.littleEndian(UInt64.self, at: 56) == Self.grainDirectoryAtEnd { return "footer announces another footer" }
        let marker = Array(footer[0..<512])
        if marker.littleEndian(UInt32.self, at: 8) != 0 || marker.littleEndian(UInt32.self, at: 12) != 3
            || marker[16...].contains(where: { $0 != 0 })
        {
            return "footer marker invalid"
        }
        let eos = Array(footer[1024..<1536])
        if eos.contains(where: { $0 != 0 }) { return "end-of-stream marker invalid" }
        return nil
    }
}

/// VirtualBox VDI: signature at 0x40, virtual size at 0x170 (little-endian).
final class VDIProbe: FormatProbe {
    override class var name: String { "vdi" }
    override init() {
        super.init()
        regions["header"] = CaptureRegion(0, 512)
    }
    override var formatMatches: Bool { regions["header"]!.complete && region("header").littleEndian(UInt32.self, at: 0x40) == 0xBEDA_107F }
    override var virtualSize: Int64 { formatMatches ? Int64(bitPattern: region("header").littleEndian(UInt64.self, at: 0x170)) : 0 }
}

/// ISO 9660 / UDF: the volume descriptor after the 32 KiB system area.
final class ISOProbe: FormatProbe {
    override class var name: String { "iso" }
    override init() {
        super.init()
        regions["system_area"] = CaptureRegion(0, 32 * 1024)
        regions["header"] = CaptureRegion(32 * 1024, 2 * 1024)
    }
    override var formatMatches: Bool {
        guard complete else { return false }
        let signature = Array(region("header")[1..<6])
        return ["CD001", "NSR02", "NSR03"].contains { Array($0.utf8) == signature }
    }
    override var virtualSize: Int64 {
        guard formatMatches, region("header")[0] == 1 else { return 0 }
        let header = region("header")
        return Int64(header.littleEndian(UInt16.self, at: 128)) * Int64(header.littleEndian(UInt32.self, at: 80))
    }
}

/// GPT and legacy MBR partitioned disks (oslo's GPTInspector; GPT begins with a protective MBR): the
/// boot signature `0x55AA` at 510, unless the sector is the boot sector of a FAT filesystem. Glance
/// takes such an image as `raw` (its byte count is its size), after the MBR's partition entries pass
/// the `mbr` safety check.
final class GPTProbe: FormatProbe {
    override class var name: String { "gpt" }
    static let partitionTable = 446
    override init() {
        super.init()
        regions["mbr"] = CaptureRegion(0, 512)
    }

    override var formatMatches: Bool {
        guard regions["mbr"]!.complete else { return false }
        let mbr = region("mbr")
        // A FAT volume boot record has the same signature; two FATs on a fixed-disk medium give it away.
        let isFAT = mbr[0x10] == 2 && mbr[0x15] == 0xF8
        return mbr.littleEndian(UInt16.self, at: 510) == 0xAA55 && !isFAT
    }

    override func safetyFailures() -> [String] {
        if let problem = mbrProblem() { return ["mbr (\(problem))"] }
        return []
    }

    /// oslo's `check_mbr_partitions`: boot flags, the protective 0xEE entry, and at least one partition.
    private func mbrProblem() -> String? {
        let mbr = region("mbr")
        var used: [Int] = []
        var protective = false
        for i in 0..<4 {
            let entry = Self.partitionTable + 16 * i
            guard [0x00, 0x80].contains(mbr[entry]) else { return "MBR PTE \(i) has invalid boot flag" }
            let type = mbr[entry + 4]
            if type != 0 { used.append(i) }
            if type == 0xEE {
                protective = true
                if Array(mbr[entry + 1..<entry + 4]) != [0x00, 0x02, 0x00] { return "GPT MBR has invalid start CHS" }
                if mbr.littleEndian(UInt32.self, at: entry + 8) != 1 { return "GPT MBR has invalid start LBA" }
            }
        }
        if protective && used != [0] { return "GPT MBR defines invalid extra partitions" }
        if used.isEmpty { return "GPT MBR has no partitions defined" }
        return nil
    }
}

/// LUKS version 1 (oslo's LUKSInspector): the `LUKS\xba\xbe` header with its eight key slots (592 bytes).
/// Refused: any other version (qemu reads LUKS1 only). Glance passes no passphrase, so the encrypted
/// payload is not decrypted to inspect what it holds. The virtual size is what follows the header
/// and key material: the byte count minus the payload offset.
final class LUKSProbe: FormatProbe {
    override class var name: String { "luks" }
    override init() {
        super.init()
        regions["header"] = CaptureRegion(0, 592)
    }
    // As oslo: the magic alone matches, so a file cut inside the header is luks, and incomplete.
    override var formatMatches: Bool { region("header").starts(with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]) }
    override var virtualSize: Int64 { total - Int64(region("header").bigEndian(UInt32.self, at: 104)) * 512 }
    override func safetyFailures() -> [String] {
        let version = region("header").bigEndian(UInt16.self, at: 6)
        return version == 1 ? [] : ["version (LUKS version \(version) is not supported)"]
    }
}

// MARK: The inspection of one upload

/// What the stream turned out to be.
public struct InspectedFormat: Sendable, Equatable {
    /// Detected format (`raw` when nothing else matched).
    public var format: String
    /// Virtual size from the header (0 when unknown).
    public var virtualSize: Int64
    public var actualSize: Int64
    /// Safety checks that failed (`backing_file (…)`, …); empty when safe.
    public var safetyFailures: [String]
    /// Why the format could not be decided or checked (several formats matched, a truncated header…).
    public var problem: String?
}

/// Runs every inspector over the stream (oslo's `InspectWrapper`). Feed it every chunk in order, then
/// call `finish()`. Not thread-safe: one upload owns one inspection.
public final class FormatInspection {
    /// The formats inspectors exist for (oslo's ALL_FORMATS): a `disk_format` outside this list (ami, ari,
    /// aki, ploop) cannot be checked, and data in which no format was recognised is accepted for it.
    public static let inspectable: Set<String> = ["raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "qed", "iso", "gpt", "luks"]

    private let probes: [FormatProbe] = [
        QcowProbe(), QEDProbe(), VHDProbe(), VHDXProbe(), VMDKProbe(), VDIProbe(), ISOProbe(), GPTProbe(), LUKSProbe(),
    ]
    private var excluded = Set<ObjectIdentifier>()
    private var total: Int64 = 0

    public init() {}

    /// Bytes held by the inspectors, for tests of "memory stays flat".
    public var retainedBytes: Int { probes.reduce(0) { $0 + $1.regions.values.reduce(0) { $0 + $1.data.count } } }

    public func eat(_ bytes: UnsafeRawBufferPointer) {
        total += Int64(bytes.count)
        for probe in probes where !excluded.contains(ObjectIdentifier(probe)) {
            do { try probe.eat(bytes) } catch { excluded.insert(ObjectIdentifier(probe)) }
        }
    }

    public func eat(_ bytes: [UInt8]) { bytes.withUnsafeBytes { eat($0) } }

    /// Ends the stream and decides.
    public func finish() -> InspectedFormat {
        for probe in probes { try? probe.finish() }
        // As oslo: an inspector that stopped on a parse error still counts if its signature matched.
        var matches = probes.filter(\.formatMatches)
        // Glance (location.py): a bootable ISO legitimately has an MBR/GPT in its system area; that pair
        // is the ISO. Any other combination is refused below.
        if Set(matches.map { type(of: $0).name }) == ["iso", "gpt"] { matches.removeAll { $0 is GPTProbe } }
        guard let detected = matches.first else {
            return InspectedFormat(format: "raw", virtualSize: total, actualSize: total, safetyFailures: [], problem: nil)
        }
        let name = type(of: detected).name
        guard matches.count == 1 else {
            let names = matches.map { type(of: $0).name }.joined(separator: ",")
            return InspectedFormat(format: name, virtualSize: 0, actualSize: total, safetyFailures: [], problem: "Multiple formats detected: \(names)")
        }
        guard detected.complete else {
            return InspectedFormat(
                format: name, virtualSize: 0, actualSize: total, safetyFailures: [], problem: "Incomplete \(name) file cannot be safety checked")
        }
        return InspectedFormat(
            format: name, virtualSize: detected.virtualSize, actualSize: total, safetyFailures: detected.safetyFailures(), problem: nil)
    }
}

extension InspectedFormat {
    /// The names of the failed safety checks (`mbr`, `backing_file`…), without the reasons.
    public var failedChecks: [String] { safetyFailures.map { String($0.prefix { $0 != " " }) } }

    /// Glance's decision for an upload claiming `diskFormat` in `containerFormat` (glance/location.py
    /// `set_data`): the virtual size to record (nil: none), or `.unsupportedMediaType` (415, nothing kept)
    /// for a mismatch — unless `requireMatch` is off — and always for failed safety checks.
    /// `gptNonfatalChecks` (`[image_format] gpt_safety_checks_nonfatal`) names GPT safety checks whose
    /// failure is let through when the data is a GPT/MBR disk.
    public func verdict(diskFormat: String, requireMatch: Bool, gptNonfatalChecks: Set<String> = []) throws -> Int64? {
        if let problem {
            if requireMatch { throw ImageStoreError(.unsupportedMediaType, "Image format inspection failed: \(problem)") }
            return nil
        }
        var size: Int64?
        if format == diskFormat {
            size = virtualSize
        } else if format == "raw" && !FormatInspection.inspectable.contains(diskFormat) {
            size = nil  // ami, ari, aki…: not inspectable, and nothing else was recognised
        } else if diskFormat == "raw" {
            size = actualSize  // a richer format uploaded as raw is allowed, sized as raw bytes
        } else {
            if requireMatch {
                throw ImageStoreError(.unsupportedMediaType, "Image disk_format \(diskFormat) does not match stream data \(format)")
            }
            return nil
        }
        if !safetyFailures.isEmpty && !(format == "gpt" && Set(failedChecks).isSubset(of: gptNonfatalChecks)) {
            throw ImageStoreError(
                .unsupportedMediaType, "Image failed safety checks: \(safetyFailures.joined(separator: ", "))")
        }
        return size.flatMap { $0 > 0 ? $0 : nil }
    }
}
