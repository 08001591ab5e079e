import ImageStoreConfig
import NIOSSL

/// TLS towards Keystone from `cafile` and `insecure`; nil (the system's defaults) when neither is set.
enum KeystoneTLS {
    static func configuration(_ options: KeystoneAuthOptions) throws -> TLSConfiguration? {
        guard options.cafile != nil || options.insecure else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let cafile = options.cafile { tls.trustRoots = .file(cafile) }
        if options.insecure { tls.certificateVerification = .none }
        return tls
    }
}
