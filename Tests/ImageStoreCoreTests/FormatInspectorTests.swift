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

    // MARK: GPT and MBR (no sgdisk/sfdisk on this machine: the disks are built here, to the UEFI spec)

    static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func put<T: FixedWidthInteger>(_ value: T, _ bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
    }

    /// An MBR partition entry (`index` 0…3) in sector 0.
    static func partition(_ bytes: inout [UInt8], _ index: Int, boot: UInt8 = 0, type: UInt8, chs: [UInt8], start: UInt32, sectors: UInt32) {
        let entry = 446 + 16 * index
        bytes[entry] = boot
        bytes.replaceSubrange(entry + 1..<entry + 4, with: chs)
        bytes[entry + 4] = type
        bytes.replaceSubrange(entry + 5..<entry + 8, with: [0xFF, 0xFF, 0xFF])
        put(start, &bytes, at: entry + 8)
        put(sectors, &bytes, at: entry + 12)
    }

    /// A GPT disk of `sectors` 512-byte sectors as `sgdisk -n 1:2048:0` makes it: protective MBR, primary
    /// header and entries, one Linux partition, backup entries and header at the end.
    static func gptDisk(sectors: Int = 8_192) -> [UInt8] {
        var disk = [UInt8](repeating: 0, count: sectors * 512)
        partition(&disk, 0, type: 0xEE, chs: [0x00, 0x02, 0x00], start: 1, sectors: UInt32(sectors - 1))
        disk[510] = 0x55
        disk[511] = 0xAA
        var entries = [UInt8](repeating: 0, count: 128 * 128)
        // Linux filesystem data 0FC63DAF-8483-4772-8E79-3D69D8477DE4, mixed-endian as GPT stores GUIDs.
        entries.replaceSubrange(0..<16, with: [0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4])
        entries.replaceSubrange(16..<32, with: (0..<16).map { UInt8($0 * 7 + 1) })
        put(UInt64(2048), &entries, at: 32)
        put(UInt64(sectors - 34), &entries, at: 40)
        let entriesCRC = crc32(entries[...])
        func header(my: Int, alternate: Int, entriesAt: Int) -> [UInt8] {
            var h = [UInt8](repeating: 0, count: 512)
            h.replaceSubrange(0..<8, with: Array("EFI PART".utf8))
            put(UInt32(0x0001_0000), &h, at: 8)
            put(UInt32(92), &h, at: 12)
            put(UInt64(my), &h, at: 24)
            put(UInt64(alternate), &h, at: 32)
            put(UInt64(34), &h, at: 40)
            put(UInt64(sectors - 34), &h, at: 48)
            h.replaceSubrange(56..<72, with: (0..<16).map { UInt8(0xA0 &+ $0) })
            put(UInt64(entriesAt), &h, at: 72)
            put(UInt32(128), &h, at: 80)
            put(UInt32(128), &h, at: 84)
            put(entriesCRC, &h, at: 88)
            put(crc32(h[0..<92]), &h, at: 16)
            return h
        }
        disk.replaceSubrange(512..<1024, with: header(my: 1, alternate: sectors - 1, entriesAt: 2))
        disk.replaceSubrange(1024..<1024 + entries.count, with: entries)
        let backupEntries = (sectors - 33) * 512
        disk.replaceSubrange(backupEntries..<backupEntries + entries.count, with: entries)
        disk.replaceSubrange((sectors - 1) * 512..<sectors * 512, with: header(my: sectors - 1, alternate: 1, entriesAt: sectors - 33))
        return disk
    }

    /// A legacy MBR disk with one bootable Linux partition (what `sfdisk` writes for `2048,,83,*`).
    static func mbrDisk(sectors: Int = 8_192) -> [UInt8] {
        var disk = [UInt8](repeating: 0, count: sectors * 512)
        disk.replaceSubrange(0..<3, with: [0xEB, 0x63, 0x90])  // a boot loader's jump
        partition(&disk, 0, boot: 0x80, type: 0x83, chs: [0x20, 0x21, 0x00], start: 2048, sectors: UInt32(sectors - 2048))
        disk[510] = 0x55
        disk[511] = 0xAA
        return disk
    }

    @Test func gptAndMbrDisks_areGpt_acceptedAsRaw_withTheByteCountAsVirtualSize() throws {
        for disk in [Self.gptDisk(), Self.mbrDisk()] {
            for chunk in [65_536, 511, 7] {
                let result = Self.inspect(disk, chunk: chunk)
                #expect(result.format == "gpt")
                #expect(result.virtualSize == Int64(disk.count))
                #expect(result.safetyFailures.isEmpty, "\(result.safetyFailures)")
                #expect(result.problem == nil)
            }
            let result = Self.inspect(disk)
            // disk_format raw (what a partitioned disk is uploaded as): accepted, sized as raw bytes.
            #expect(try result.verdict(diskFormat: "raw", requireMatch: true) == Int64(disk.count))
            #expect(try result.verdict(diskFormat: "gpt", requireMatch: true) == Int64(disk.count))
            // Any other claim, ami included (gpt is an inspectable format), is a mismatch.
            for disk in ["qcow2", "iso", "ami", "aki"] {
                let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: disk, requireMatch: true) }
                #expect(error?.code == .unsupportedMediaType)
                #expect(error?.message.contains("does not match stream data gpt") == true)
            }
        }
    }

    @Test func hostileMbrs_failTheMbrCheck_unlessMadeNonfatal() throws {
        var badBoot = Self.gptDisk()
        badBoot[446 + 16] = 0x7F  // entry 1: a boot flag that is neither 0x00 nor 0x80
        var badCHS = Self.gptDisk()
        badCHS[446 + 2] = 0x03
        var badLBA = Self.gptDisk()
        Self.put(UInt32(0), &badLBA, at: 446 + 8)
        var extra = Self.gptDisk()  // a protective MBR next to a partition: a hybrid MBR
        Self.partition(&extra, 1, type: 0x0C, chs: [0, 0, 0], start: 4096, sectors: 100)
        var protectiveNotFirst = Self.gptDisk()
        protectiveNotFirst.replaceSubrange(446 + 16..<446 + 32, with: protectiveNotFirst[446..<446 + 16])
        protectiveNotFirst.replaceSubrange(446..<446 + 16, with: [UInt8](repeating: 0, count: 16))
        var empty = [UInt8](repeating: 0, count: 4_096)
        empty[510] = 0x55
        empty[511] = 0xAA
        let cases: [([UInt8], String)] = [
            (badBoot, "MBR PTE 1 has invalid boot flag"), (badCHS, "GPT MBR has invalid start CHS"),
            (badLBA, "GPT MBR has invalid start LBA"), (extra, "GPT MBR defines invalid extra partitions"),
            (protectiveNotFirst, "GPT MBR defines invalid extra partitions"), (empty, "GPT MBR has no partitions defined"),
        ]
        for (bytes, reason) in cases {
            let result = Self.inspect(bytes)
            #expect(result.format == "gpt")
            #expect(result.safetyFailures == ["mbr (\(reason))"])
            // Safety checks do not depend on require_image_format_match.
            for require in [true, false] {
                let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "raw", requireMatch: require) }
                #expect(error?.code == .unsupportedMediaType)
                #expect(error?.message.contains("mbr") == true)
            }
            // [image_format] gpt_safety_checks_nonfatal = mbr lets them through.
            #expect(try result.verdict(diskFormat: "raw", requireMatch: true, gptNonfatalChecks: ["mbr"]) == Int64(bytes.count))
        }
        // Non-fatal GPT checks are GPT's only: a qcow2 backing file stays fatal.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try QemuImg.create("raw", size: "1M", name: "base.raw", in: directory)
        let backed = Self.inspect(try QemuImg.create("qcow2", extra: ["-b", "base.raw", "-F", "raw"], name: "b.qcow2", in: directory))
        #expect(throws: ImageStoreError.self) {
            try backed.verdict(diskFormat: "qcow2", requireMatch: true, gptNonfatalChecks: ["mbr", "backing_file"])
        }
    }

    @Test func fatBootSector_isNotAPartitionTable() throws {
        // A FAT32 volume boot record: boot signature 0x55AA, two FATs, media 0xF8 (fixed disk).
        var fat = [UInt8](repeating: 0, count: 64 * 1024)
        fat.replaceSubrange(0..<11, with: [0xEB, 0x58, 0x90] + Array("MSDOS5.0".utf8))
        Self.put(UInt16(512), &fat, at: 0x0B)
        fat[0x0D] = 8
        fat[0x10] = 2
        fat[0x15] = 0xF8
        fat[510] = 0x55
        fat[511] = 0xAA
        let result = Self.inspect(fat)
        #expect(result.format == "raw")
        #expect(try result.verdict(diskFormat: "raw", requireMatch: true) == Int64(fat.count))
    }

    @Test func isoWithAPartitionTable_isTheIso_butOtherPairsAreRefused() throws {
        // An isohybrid ISO (bootable from a USB stick): an MBR in the system area, the ISO volume descriptor at 32 KiB.
        var hybrid = Self.iso(blocks: 20)
        Self.partition(&hybrid, 0, boot: 0x80, type: 0x17, chs: [0, 1, 0], start: 0, sectors: 80)
        hybrid[510] = 0x55
        hybrid[511] = 0xAA
        let result = Self.inspect(hybrid)
        #expect(result.format == "iso")
        #expect(result.problem == nil)
        #expect(try result.verdict(diskFormat: "iso", requireMatch: true) == 40_960)
        #expect(try result.verdict(diskFormat: "raw", requireMatch: true) == Int64(hybrid.count))

        // A qcow2 header that is also an MBR hides one format in another: refused.
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var qcow2 = try QemuImg.create("qcow2", in: directory)
        Self.partition(&qcow2, 0, type: 0x83, chs: [0, 2, 0], start: 1, sectors: 100)
        qcow2[510] = 0x55
        qcow2[511] = 0xAA
        let both = Self.inspect(qcow2)
        #expect(both.problem?.hasPrefix("Multiple formats detected") == true, "\(both)")
        for disk in ["qcow2", "raw"] {
            let error = #expect(throws: ImageStoreError.self) { try both.verdict(diskFormat: disk, requireMatch: true) }
            #expect(error?.code == .unsupportedMediaType)
        }
        // An ISO holding a GPT and a VHD header at once: three formats, refused too.
        var three = hybrid
        three.replaceSubrange(0..<8, with: Array("conectix".utf8))
        #expect(Self.inspect(three).problem?.hasPrefix("Multiple formats detected") == true)
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
