import ArgumentParser
import Foundation
import ImageStoreCore
import ImageStoreStorage

/// `imagestore hash-speed`: what md5 + the os_hash_value digest cost on this CPU with the server's own
/// code, from memory — the floor `scripts/bench` compares an upload's CPU with. Not for operators.
struct HashSpeed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-speed",
        abstract: "Measure md5 + the hashing_algorithm digest on an in-memory stream (for scripts/bench).",
        shouldDisplay: false)

    @Option(help: "MiB to hash.") var mib: Int = 1024
    @Option(help: "The os_hash_value algorithm: sha1, sha256, sha384 or sha512.") var algorithm: String = "sha512"

    func run() throws {
        guard let algorithm = HashAlgorithm(rawValue: algorithm) else {
            throw ValidationError("unknown algorithm \(algorithm)")
        }
        let result = HashThroughput.measure(bytes: Int64(mib) << 20, algorithm: algorithm)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
    }
}
