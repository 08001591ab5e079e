import Foundation
import ImageStoreCore
import ImageStoreTestSupport
import Testing

/// The format inspection on real `qemu-img` images and on hand-crafted hostile ones, fed the way an
/// upload feeds it: in chunks of any size.
@Suite struct FormatInspectorTests {
    static func inspect(_ bytes: [UInt8], chunk: Int = 65_536) -> InspectedFormat {
        let inspection = FormatInspection()
        var start = 0
        while start < bytes.count {
            let end = min(start + chunk, bytes.count)
            bytes[start..<end].withUnsafeBytes { inspection.eat($0) }
            start = end
        }
        return inspection.finish()
    }

    struct Made: Sendable, CustomTestStringConvertible {
        var format: String
        var qemuFormat: String
        var options: String?
        var testDescription: String { "\(qemuFormat) \(options ?? "")" }
    }

    static let made: [Made] = [
        Made(format: "qcow2", qemuFormat: "qcow2"),
        Made(format: "qcow2", qemuFormat: "qcow2", options: "compat=0.10"),
        Made(format: "vmdk", qemuFormat: "vmdk"),
        Made(format: "vmdk", qemuFormat: "vmdk", options: "subformat=streamOptimized"),
        Made(format: "vhd", qemuFormat: "vpc"),
        Made(format: "vhdx", qemuFormat: "vhdx"),
        Made(format: "vdi", qemuFormat: "vdi"),
    ]

    @Test(arguments: made)
    func qemuImages_detectedWithQemusVirtualSize_inAnyChunking(made: Made) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let bytes = try QemuImg.create(made.qemuFormat, options: made.options, in: directory)
        let expected = try QemuImg.virtualSize(of: "image", in: directory)
        // Odd chunk sizes cross every header boundary; byte-sized ones only where the file is small.
        for chunk in [65_536, 4_096, 511] + (bytes.count <= 200_000 ? [7] : []) {
            let result = Self.inspect(bytes, chunk: chunk)
            #expect(result.format == made.format, "chunk \(chunk)")
            #expect(result.virtualSize == expected, "chunk \(chunk)")
            #expect(result.safetyFailures.isEmpty, "chunk \(chunk): \(result.safetyFailures)")
            #expect(result.problem == nil)
            #expect(try result.verdict(diskFormat: made.format, requireMatch: true) == expected)
        }
    }

    @Test func qcow2WithBackingFile_orExternalDataFile_isAlwaysRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try QemuImg.create("raw", size: "1M", name: "base.raw", in: directory)
        let backed = try QemuImg.create("qcow2", extra: ["-b", "base.raw", "-F", "raw"], name: "backed.qcow2", in: directory)
        let dataFile = try QemuImg.create("qcow2", options: "data_file=ext.raw,data_file_raw=on", name: "df.qcow2", in: directory)
        for (bytes, check) in [(backed, "backing_file"), (dataFile, "data_file")] {
            let result = Self.inspect(bytes)
            #expect(result.format == "qcow2")
            #expect(result.safetyFailures.contains { $0.hasPrefix(check) }, "\(result.safetyFailures)")
            // Refused as qcow2, as "raw" (the richer format is still checked), and with matching off.
            for (disk, require) in [("qcow2", true), ("raw", true), ("qcow2", false)] {
                let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: disk, requireMatch: require) }
                #expect(error?.code == .unsupportedMediaType)
                #expect(error?.message.contains(check) == true)
            }
        }
    }

    @Test func qcow2_unknownFeatureOrVersion_isRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var unknownFeature = try QemuImg.create("qcow2", in: directory)
        unknownFeature[0x4F] |= 0x10  // incompatible feature bit 4: not defined
        #expect(Self.inspect(unknownFeature).safetyFailures.contains { $0.hasPrefix("unknown_features") })
        var version1 = try QemuImg.create("qcow2", in: directory)
        version1[7] = 1
        #expect(Self.inspect(version1).safetyFailures.contains { $0.hasPrefix("unknown_features") })
    }

    @Test func vmdk_extentOutsideTheFile_orFlatSubformat_isRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A monolithicSparse VMDK whose descriptor points its extent at a host file.
        var sparse = try QemuImg.create("vmdk", in: directory)
        let descriptor = Array(String(decoding: sparse[0x200..<0x400], as: UTF8.self).utf8)
        let text = String(decoding: descriptor, as: UTF8.self)
        let hostile = text.replacingOccurrences(of: "\"image\"", with: "\"/etc/shadow\"")
        #expect(hostile != text)
        let hostileBytes = Array(hostile.utf8)
        sparse.replaceSubrange(0x200..<0x200 + hostileBytes.count, with: hostileBytes)
        let result = Self.inspect(sparse)
        #expect(result.format == "vmdk")
        #expect(result.safetyFailures.contains { $0.contains("extent") }, "\(result.safetyFailures)")
        #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "vmdk", requireMatch: true) }

        // A flat VMDK is a text descriptor naming a separate extent file.
        let flat = try QemuImg.create("vmdk", options: "subformat=monolithicFlat", in: directory)
        let flatResult = Self.inspect(flat)
        #expect(flatResult.format == "vmdk")
        #expect(flatResult.safetyFailures.contains { $0.contains("unsupported subformat") })
    }

    @Test func qed_isRecognisedAndBanned() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = Self.inspect(try QemuImg.create("qed", in: directory))
        #expect(result.format == "qed")
        #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "raw", requireMatch: true) }
    }

    static func iso(blocks: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 40 * 1024)
        let pvd = 32 * 1024
        bytes[pvd] = 1
        bytes.replaceSubrange(pvd + 1..<pvd + 6, with: Array("CD001".utf8))
        withUnsafeBytes(of: blocks.littleEndian) { bytes.replaceSubrange(pvd + 80..<pvd + 84, with: $0) }
        withUnsafeBytes(of: UInt16(2048).littleEndian) { bytes.replaceSubrange(pvd + 128..<pvd + 130, with: $0) }
        return bytes
    }

    @Test func iso_volumeSizeFromThePrimaryDescriptor() throws {
        let result = Self.inspect(Self.iso(blocks: 100), chunk: 1000)
        #expect(result.format == "iso")
        #expect(result.virtualSize == 204_800)
        #expect(try result.verdict(diskFormat: "iso", requireMatch: true) == 204_800)
    }

    @Test func mismatches_followGlance() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let qcow2 = Self.inspect(try QemuImg.create("qcow2", in: directory))
        let raw = Self.inspect((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
        #expect(raw.format == "raw")
        // Raw data claiming a rich format, or a rich format claiming another: 415.
        for (result, disk) in [(raw, "qcow2"), (raw, "vmdk"), (qcow2, "vmdk"), (qcow2, "ami"), (qcow2, "iso")] {
            let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: disk, requireMatch: true) }
            #expect(error?.code == .unsupportedMediaType)
            #expect(error?.message.contains("does not match") == true)
            // require_image_format_match = false lets it through, without a virtual size.
            #expect(try result.verdict(diskFormat: disk, requireMatch: false) == nil)
        }
        // A rich format uploaded as raw is allowed and sized as raw bytes; ami/ari/aki cannot be inspected.
        #expect(try qcow2.verdict(diskFormat: "raw", requireMatch: true) == qcow2.actualSize)
        #expect(try raw.verdict(diskFormat: "raw", requireMatch: true) == 300_000)
        for disk in ["ami", "ari", "aki"] { #expect(try raw.verdict(diskFormat: disk, requireMatch: true) == nil) }
    }

    @Test func twoFormatsAtOnce_areRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var both = try QemuImg.create("qcow2", in: directory)
        let iso = Self.iso(blocks: 10)
        both.replaceSubrange(32 * 1024..<34 * 1024, with: iso[32 * 1024..<34 * 1024])
        let result = Self.inspect(both)
        #expect(result.problem?.contains("Multiple formats") == true)
        #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "qcow2", requireMatch: true) }
    }

    @Test func truncatedHeaders_areRawOrRefused_neverACrash() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let vhdx = try QemuImg.create("vhdx", in: directory)
        // Cut inside the region table: vhdx by signature, but its size cannot be read.
        let cut = Self.inspect(Array(vhdx.prefix(200 * 1024)))
        #expect(cut.format == "vhdx")
        #expect(throws: ImageStoreError.self) { try cut.verdict(diskFormat: "vhdx", requireMatch: true) }
        // Every prefix of a qcow2 header, and garbage with hostile offsets, decide without crashing.
        let qcow2 = try QemuImg.create("qcow2", in: directory)
        for length in [0, 1, 4, 100, 511] { _ = Self.inspect(Array(qcow2.prefix(length)), chunk: 3) }
        var hostile = vhdx
        // Region table entry offset of the metadata region: point it at the end of the 64-bit space.
        for entry in 0..<2 { for i in 0..<8 { hostile[192 * 1024 + 16 + entry * 32 + 16 + i] = 0xFF } }
        _ = Self.inspect(hostile)
    }

    @Test func memoryStaysFlat_onALargeStream() {
        let inspection = FormatInspection()
        let chunk = [UInt8](repeating: 0xA5, count: 65_536)
        for _ in 0..<1_024 { chunk.withUnsafeBytes { inspection.eat($0) } }  // 64 MiB
        #expect(inspection.retainedBytes < 256 * 1024)
        let result = inspection.finish()
        #expect(result.format == "raw")
        #expect(result.actualSize == 64 << 20)
    }
}
