public import Crypto
import Foundation
public import NIOSSL

/// The server side of TLS for every listener of the node: TLS 1.2 or later, the certificate chain
/// and key — from PEM files (the operator's own, "bring your own certificate"), or from a key the
/// node holds in memory (unsealed from the TPM, never written out) — and, when a client CA is
/// given, client certificates from that CA required (mutual TLS; hostnames of clients are not checked).
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
        return try configuration(chain: chain, key: key, clientCA: clientCA, fields: fields)
    }

    /// TLS with a P-256 key held in memory and its certificate (PEM text): the key goes to BoringSSL
    /// as PKCS#8 DER bytes, which are overwritten with zeros once it holds its own copy.
    public static func configuration(certificatePEM: String, privateKey: P256.Signing.PrivateKey, clientCA: String?,
                                     fields: Fields) throws(LoadError) -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
        } catch {
            throw LoadError(description: "cannot load \(fields.certificate): \(error)")
        }
        guard !chain.isEmpty else { throw LoadError(description: "\(fields.certificate) holds no certificate") }
        var der = privateKey.derRepresentation
        var bytes = Array(der)
        defer {
            zeroize(&bytes)
            der.resetBytes(in: 0..<der.count)
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: bytes, format: .der)
        } catch {
            throw LoadError(description: "cannot use \(fields.privateKey): \(error)")
        }
        return try configuration(chain: chain, key: key, clientCA: clientCA, fields: fields)
    }

    static func configuration(chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, clientCA: String?,
                              fields: Fields) throws(LoadError) -> TLSConfiguration {
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

    /// Overwrites key bytes with zeros (explicit_bzero: not removed as a dead store).
    public static func zeroize(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
        }
    }
}
