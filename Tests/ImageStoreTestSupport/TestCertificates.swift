import Foundation

/// A private certificate authority and a server certificate it signed, made by Debian's `openssl` for a
/// test (RSA 2048, valid for a day): `caPath` is what a client trusts, `certificatePath` and `keyPath` are
/// what the server presents.
public struct TestCertificates: Sendable {
    public let caPath: String
    public let certificatePath: String
    public let keyPath: String

    /// Makes the CA and a server certificate for `dnsNames` and `ipAddresses` into `directory`
    /// (files prefixed with `name`).
    public static func make(
        in directory: String, name: String = "server", dnsNames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1"]
    ) async throws -> TestCertificates {
        let ca = "\(directory)/\(name)-ca.pem", caKey = "\(directory)/\(name)-ca.key"
        let key = "\(directory)/\(name).key", request = "\(directory)/\(name).csr", certificate = "\(directory)/\(name).pem"
        let extensions = "\(directory)/\(name).ext"
        let names = dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" }
        try "subjectAltName = \(names.joined(separator: ","))\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n"
            .write(toFile: extensions, atomically: true, encoding: .utf8)
        try await openssl(
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", ca, "-days", "1",
                "-subj", "/CN=ImageStore test CA \(name)",
            ], in: directory)
        try await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj", "/CN=\(dnsNames.first ?? "server")"], in: directory)
        try await openssl(
            [
                "x509", "-req", "-in", request, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", certificate, "-days", "1",
                "-extfile", extensions,
            ], in: directory)
        // PostgreSQL refuses a key file others can read.
        chmod(key, 0o600)
        return TestCertificates(caPath: ca, certificatePath: certificate, keyPath: key)
    }

    private static func openssl(_ arguments: [String], in directory: String) async throws {
        let log = "\(directory)/openssl-\(UUID().uuidString.prefix(8)).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let process = try ManagedProcess("/usr/bin/openssl", arguments: arguments, stdoutPath: log, stderrPath: log)
        guard let status = await process.waitForExit(timeout: .seconds(60)) else {
            await process.kill()
            throw TestSupportError("openssl \(arguments.first ?? "") did not finish")
        }
        guard status == 0 else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestSupportError("openssl \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
    }
}
