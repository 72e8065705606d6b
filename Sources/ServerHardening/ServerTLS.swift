public import NIOSSL

/// The server side of TLS for every listener of the node, from PEM files: TLS 1.2 or later, the
/// certificate chain and key, and, when a client CA is given, client certificates from that CA
/// required (mutual TLS; hostnames of clients are not checked).
public enum ServerTLS {
    /// The configuration keys the files came from, so that errors name the one at fault.
    public struct Fields: Sendable {
        public var certificate: String
        public var privateKey: String
        public var clientCA: String
        public init(certificate: String, privateKey: String, clientCA: String) {
            self.certificate = certificate
            self.privateKey = privateKey
            self.clientCA = clientCA
        }
    }

    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public static func configuration(certificate: String, privateKey: String, clientCA: String?,
                                     fields: Fields) throws(LoadError) -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            throw LoadError(description: "cannot load \(fields.certificate) \(certificate): \(error)")
        }
        guard !chain.isEmpty else { throw LoadError(description: "\(fields.certificate) \(certificate) holds no certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: privateKey, format: .pem)
        } catch {
            throw LoadError(description: "cannot load \(fields.privateKey) \(privateKey): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA {
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(clientCA)
            } catch {
                throw LoadError(description: "cannot load \(fields.clientCA) \(clientCA): \(error)")
            }
            guard !roots.isEmpty else { throw LoadError(description: "\(fields.clientCA) \(clientCA) holds no certificate") }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .noHostnameVerification
        }
        return configuration
    }
}
