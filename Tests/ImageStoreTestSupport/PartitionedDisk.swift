/// Partitioned disk images built to the UEFI specification, for format inspection tests (this machine
/// has no sgdisk or sfdisk): what those tools write, byte for byte where the inspector looks.
public enum PartitionedDisk {
    public static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    public static func put<T: FixedWidthInteger>(_ value: T, _ bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
    }

    /// An MBR partition entry (`index` 0…3) in sector 0.
    public static func partition(_ bytes: inout [UInt8], _ index: Int, boot: UInt8 = 0, type: UInt8, chs: [UInt8], start: UInt32, sectors: UInt32) {
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
    public static func gpt(sectors: Int = 8_192) -> [UInt8] {
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
    public static func mbr(sectors: Int = 8_192) -> [UInt8] {
        var disk = [UInt8](repeating: 0, count: sectors * 512)
        disk.replaceSubrange(0..<3, with: [0xEB, 0x63, 0x90])  // a boot loader's jump
        partition(&disk, 0, boot: 0x80, type: 0x83, chs: [0x20, 0x21, 0x00], start: 2048, sectors: UInt32(sectors - 2048))
        disk[510] = 0x55
        disk[511] = 0xAA
        return disk
    }
}
