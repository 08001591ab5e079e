import Foundation

/// Disk images made by the real `qemu-img` (Debian's qemu-utils, installed by scripts/setup-system), so
/// the format tests read headers exactly as qemu writes them.
public enum QemuImg {
    public static let path = "/usr/bin/qemu-img"

    /// Creates an image with `qemu-img create -f format [-o options] [extra…] NAME size` in `directory`
    /// and returns the bytes of the file named `name` (for flat VMDKs, the descriptor).
    public static func create(
        _ format: String, size: String = "10M", options: String? = nil, extra: [String] = [], name: String = "image",
        in directory: TemporaryDirectory
    ) throws -> [UInt8] {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestSupportError("\(path) is missing: install qemu-utils (scripts/setup-system does)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.currentDirectoryURL = directory.url
        var arguments = ["create", "-q", "-f", format]
        if let options { arguments += ["-o", options] }
        process.arguments = arguments + extra + [name, size]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestSupportError("qemu-img create \(format) failed: \(message)") }
        return Array(try Data(contentsOf: directory.url.appendingPathComponent(name)))
    }

    /// `qemu-img info`'s virtual size of a file in `directory`.
    public static func virtualSize(of name: String, in directory: TemporaryDirectory) throws -> Int64 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.currentDirectoryURL = directory.url
        process.arguments = ["info", "--output=json", name]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let info = try JSONSerialization.jsonObject(with: data) as? [String: Any], let size = info["virtual-size"] as? Int64
        else { throw TestSupportError("qemu-img info \(name): no virtual-size") }
        return size
    }
}
