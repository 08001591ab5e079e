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

    static func gptDisk() -> [UInt8] { PartitionedDisk.gpt() }
    static func mbrDisk() -> [UInt8] { PartitionedDisk.mbr() }
    static func put<T: FixedWidthInteger>(_ value: T, _ bytes: inout [UInt8], at offset: Int) { PartitionedDisk.put(value, &bytes, at: offset) }
    static func partition(_ bytes: inout [UInt8], _ index: Int, boot: UInt8 = 0, type: UInt8, chs: [UInt8], start: UInt32, sectors: UInt32) {
        PartitionedDisk.partition(&bytes, index, boot: boot, type: type, chs: chs, start: start, sectors: sectors)
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

    // MARK: Formats without safety checks (vhd, vhdx, vdi, iso): bounded parsing of hostile headers

    @Test func vhdxVhdVdi_hostileOrCutHeaders_areRefusedOrRaw_neverTrusted() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let vhdx = try QemuImg.create("vhdx", in: directory)
        // A region table announcing 5000 entries (oslo's limit is 2047): vhdx, but its size is never read.
        var manyRegions = vhdx
        manyRegions.replaceSubrange(192 * 1024 + 8..<192 * 1024 + 12, with: [0x88, 0x13, 0, 0])
        // A metadata table without its signature.
        var badMetadata = vhdx
        let signature = Array("metadata".utf8)
        let at = try #require(
            (256 * 1024..<badMetadata.count - 8).first { badMetadata[$0] == 0x6D && Array(badMetadata[$0..<$0 + 8]) == signature })
        badMetadata[at] = 0x4D
        // A metadata table announcing 5000 items.
        var manyItems = vhdx
        manyItems.replaceSubrange(at + 10..<at + 12, with: [0x88, 0x13])
        // As oslo (whose vhdx has no safety check): tables it cannot read leave the size unknown, and
        // an image whose metadata table was cut off by the error is incomplete, so refused.
        for (bytes, refused) in [(manyRegions, false), (badMetadata, true), (manyItems, false)] {
            let result = Self.inspect(bytes, chunk: 4_096)
            #expect(result.format == "vhdx")
            #expect(result.virtualSize == 0)
            if refused {
                let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "vhdx", requireMatch: true) }
                #expect(error?.code == .unsupportedMediaType)
            } else {
                #expect(try result.verdict(diskFormat: "vhdx", requireMatch: true) == nil)
            }
            #expect(try result.verdict(diskFormat: "vhdx", requireMatch: false) == nil)
        }
        // A VHD footer copy cut short: vhd by its cookie, too short to check. A cut VDI header is raw.
        let vhd = try QemuImg.create("vpc", in: directory)
        let cutVHD = Self.inspect(Array(vhd.prefix(100)))
        #expect(cutVHD.format == "vhd")
        #expect(cutVHD.problem != nil)
        let vdi = try QemuImg.create("vdi", in: directory)
        #expect(Self.inspect(Array(vdi.prefix(400))).format == "raw")
        // A VDI or ISO whose size fields are all ones: taken as they say (no check exists), never a crash.
        var hugeVDI = vdi
        hugeVDI.replaceSubrange(0x170..<0x178, with: [UInt8](repeating: 0xFF, count: 8))
        #expect(Self.inspect(hugeVDI).format == "vdi")
        var hugeISO = Self.iso(blocks: .max)
        hugeISO.replaceSubrange(32 * 1024 + 128..<32 * 1024 + 130, with: [0xFF, 0xFF])
        #expect(Self.inspect(hugeISO).virtualSize == Int64(UInt32.max) * 65_535)
    }

    // MARK: LUKS

    /// A LUKS1 image from `qemu-img create -f luks` (the secret is only needed to make it).
    static func luks(size: String = "1M", in directory: TemporaryDirectory) throws -> [UInt8] {
        try QemuImg.create(
            "luks", size: size, options: "key-secret=sec0,iter-time=10", extra: ["--object", "secret,id=sec0,data=hunter2"],
            name: "image", in: directory)
    }

    @Test func luksFromQemuImg_isLuks_withThePayloadAsVirtualSize() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let bytes = try Self.luks(in: directory)
        let expected = try QemuImg.virtualSize(of: "image", in: directory)
        #expect(expected == 1 << 20)
        for chunk in [65_536, 4_096, 511] {
            let result = Self.inspect(bytes, chunk: chunk)
            #expect(result.format == "luks")
            #expect(result.virtualSize == expected, "chunk \(chunk)")
            #expect(result.safetyFailures.isEmpty)
            #expect(result.problem == nil)
        }
        let result = Self.inspect(bytes)
        #expect(try result.verdict(diskFormat: "luks", requireMatch: true) == expected)
        // As raw (Glance's disk_formats has no luks by default): accepted, sized as raw bytes.
        #expect(try result.verdict(diskFormat: "raw", requireMatch: true) == Int64(bytes.count))
        for disk in ["qcow2", "ami", "iso"] {
            let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: disk, requireMatch: true) }
            #expect(error?.message.contains("does not match stream data luks") == true)
        }
    }

    @Test func luks_otherVersions_andCutHeaders_areRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var version2 = try Self.luks(in: directory)
        version2[7] = 2  // LUKS2 (which qemu cannot open) carries the same magic
        let result = Self.inspect(version2)
        #expect(result.format == "luks")
        #expect(result.safetyFailures == ["version (LUKS version 2 is not supported)"])
        for (disk, require) in [("raw", true), ("luks", true), ("raw", false)] {
            let error = #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: disk, requireMatch: require) }
            #expect(error?.code == .unsupportedMediaType)
        }
        // The magic without the whole 592-byte header: luks, but it cannot be checked.
        let cut = Self.inspect(Array(version2.prefix(300)), chunk: 7)
        #expect(cut.format == "luks")
        #expect(cut.problem == "Incomplete luks file cannot be safety checked")
        #expect(throws: ImageStoreError.self) { try cut.verdict(diskFormat: "raw", requireMatch: true) }
        #expect(try cut.verdict(diskFormat: "raw", requireMatch: false) == nil)
        // A payload offset past the end of the data gives no (negative) virtual size.
        var farPayload = try Self.luks(in: directory)
        farPayload.replaceSubrange(104..<108, with: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(try Self.inspect(farPayload).verdict(diskFormat: "luks", requireMatch: true) == nil)
    }

    // MARK: ami, ari, aki

    @Test func amiAriAki_takeUnrecognisedData_butNotARecognisedFormat() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // A kernel, a ramdisk or a filesystem image: nothing any inspector recognises.
        var kernel = [UInt8](repeating: 0, count: 100_000)
        kernel.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))  // a bzImage's setup header
        let raw = Self.inspect(kernel)
        #expect(raw.format == "raw")
        let qcow2 = Self.inspect(try QemuImg.create("qcow2", in: directory))
        let vhd = Self.inspect(try QemuImg.create("vpc", in: directory))
        for disk in ["ami", "ari", "aki"] {
            // Not inspectable: accepted, and no virtual size is recorded.
            #expect(try raw.verdict(diskFormat: disk, requireMatch: true) == nil)
            for other in [qcow2, vhd, Self.inspect(Self.gptDisk())] {
                let error = #expect(throws: ImageStoreError.self) { try other.verdict(diskFormat: disk, requireMatch: true) }
                #expect(error?.message.contains("does not match stream data \(other.format)") == true)
                #expect(try other.verdict(diskFormat: disk, requireMatch: false) == nil)
            }
        }
    }

    // MARK: VMDK safety checks on hand-made headers

    @Test func vmdkDescriptors_withUnknownLines_noExtents_orMisplaced_areRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let sparse = try QemuImg.create("vmdk", in: directory)
        func replacing(_ old: String, _ new: String) -> [UInt8] {
            precondition(old.utf8.count == new.utf8.count)
            var bytes = sparse
            let text = String(decoding: bytes[0x200..<0x400], as: UTF8.self)
            let changed = Array(text.replacingOccurrences(of: old, with: new).utf8)
            precondition(changed != Array(text.utf8))
            bytes.replaceSubrange(0x200..<0x200 + changed.count, with: changed)
            return bytes
        }
        let cases: [([UInt8], String)] = [
            (replacing("# Extent description", "! Extent description"), "invalid descriptor line"),
            (replacing("RW 20480 SPARSE", "#W 20480 SPARSE"), "no extents"),
            (replacing("monolithicSparse", "vmfsSparse\"     "), "unsupported subformat vmfssparse"),
        ]
        for (bytes, reason) in cases {
            let result = Self.inspect(bytes, chunk: 300)
            #expect(result.format == "vmdk")
            #expect(result.safetyFailures == ["descriptor (\(reason))"])
            #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "vmdk", requireMatch: false) }
        }
        // A descriptor elsewhere than sector 1, or a version other than 1-3: refused, never read.
        var misplaced = sparse
        misplaced[28] = 5
        var version4 = sparse
        version4[4] = 4
        for bytes in [misplaced, version4] {
            let result = Self.inspect(bytes)
            #expect(result.format == "vmdk")
            #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "vmdk", requireMatch: true) }
        }
    }

    /// A streamOptimized VMDK whose grain directory is in a footer (what VMware writes while streaming;
    /// qemu-img puts it in the header): the header says "at the end", then footer marker, footer, and
    /// end-of-stream marker.
    static func vmdkWithFooter(in directory: TemporaryDirectory) throws -> [UInt8] {
        let stream = try QemuImg.create("vmdk", options: "subformat=streamOptimized", in: directory)
        var bytes = stream
        bytes.replaceSubrange(56..<64, with: [UInt8](repeating: 0xFF, count: 8))
        var marker = [UInt8](repeating: 0, count: 512)
        marker[12] = 3  // MARKER_FOOTER
        let footer = Array(stream[0..<512])  // the real grain directory offset
        return bytes + marker + footer + [UInt8](repeating: 0, count: 512)
    }

    @Test func vmdkFooters_mustAgreeWithTheHeader() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let good = try Self.vmdkWithFooter(in: directory)
        for chunk in [65_536, 1_000] {
            let result = Self.inspect(good, chunk: chunk)
            #expect(result.format == "vmdk")
            #expect(result.safetyFailures.isEmpty, "\(result.safetyFailures)")
            #expect(try result.verdict(diskFormat: "vmdk", requireMatch: true) == 10 << 20)
        }
        let end = good.count
        let footer = end - 1024
        func tampered(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes = good
            change(&bytes)
            return bytes
        }
        let cases: [([UInt8], String)] = [
            (tampered { $0[footer] = 0x4C }, "header and footer signatures differ"),
            (tampered { $0[footer + 4] = 2 }, "header and footer versions differ"),
            (tampered { $0[footer + 36] = 9 }, "footer names another descriptor"),
            (tampered { $0.replaceSubrange(footer + 56..<footer + 64, with: [UInt8](repeating: 0xFF, count: 8)) }, "footer announces another footer"),
            (tampered { $0[end - 1536 + 12] = 2 }, "footer marker invalid"),
            (tampered { $0[end - 1536 + 100] = 1 }, "footer marker invalid"),
            (tampered { $0[end - 1] = 1 }, "end-of-stream marker invalid"),
            (Array(good.dropLast(1536)), "header and footer signatures differ"),
        ]
        for (bytes, reason) in cases {
            let result = Self.inspect(bytes, chunk: 4_096)
            #expect(result.format == "vmdk")
            #expect(result.safetyFailures == ["footer (\(reason))"], "\(reason)")
            #expect(throws: ImageStoreError.self) { try result.verdict(diskFormat: "vmdk", requireMatch: true) }
        }
        // A file shorter than the footer it announces.
        let short = Self.inspect(Array(good.prefix(1_200)), chunk: 100)
        #expect(throws: ImageStoreError.self) { try short.verdict(diskFormat: "vmdk", requireMatch: true) }
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

    @Test func memoryStaysFlat_behindEveryNewHeader() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let luksHeader = Array(try Self.luks(in: directory).prefix(4 << 20))
        let filler = [UInt8](repeating: 0, count: 65_536)
        for (head, format) in [(PartitionedDisk.gpt(), "gpt"), (luksHeader, "luks"), (PartitionedDisk.mbr(), "gpt")] {
            let inspection = FormatInspection()
            // In 64 KiB chunks, as an upload arrives (one chunk may fill a region up to its length: the
            // VMDK descriptor takes at most 1 MiB of a first chunk before that inspector gives up).
            for start in stride(from: 0, to: head.count, by: 65_536) {
                head[start..<min(start + 65_536, head.count)].withUnsafeBytes { inspection.eat($0) }
            }
            for _ in 0..<512 { filler.withUnsafeBytes { inspection.eat($0) } }  // 32 MiB more
            #expect(inspection.retainedBytes < 256 * 1024)
            #expect(inspection.finish().format == format)
        }
    }
}
