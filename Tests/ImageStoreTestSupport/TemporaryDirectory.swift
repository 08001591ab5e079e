import Foundation

/// A fresh directory under /tmp, removed with everything in it by `remove()` (idempotent; call it in a defer).
public final class TemporaryDirectory: Sendable {
    public let path: String
    public var url: URL { URL(fileURLWithPath: path, isDirectory: true) }
    private let removeOnDeinit: Bool

    /// - Parameter removeOnDeinit: also remove the directory when the last reference goes, for owners
    ///   (a test harness) that may be dropped without ever reaching their clean-up.
    public init(prefix: String = "imagestore-test", removeOnDeinit: Bool = false) throws {
        self.removeOnDeinit = removeOnDeinit
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else {
            throw TestSupportError("mkdtemp under /tmp failed: \(String(cString: strerror(errno)))")
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `path/name`.
    public func appending(_ name: String) -> String { path + "/" + name }

    /// Creates (with parents) and returns `path/name`.
    @discardableResult
    public func makeDirectory(_ name: String) throws -> String {
        let dir = appending(name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    deinit { if removeOnDeinit { remove() } }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A failure of the test harness itself (not of the code under test).
public struct TestSupportError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
