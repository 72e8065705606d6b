import Crypto
import Foundation
import TPM

/// Makes quotes in the form Keylime's verifier parses (keylime/tpm/tpm_main.py
/// `_get_quote_parameters`, tpm_util.py `checkquote`): `"r" + b64(TPMS_ATTEST) + ":" +
/// b64(TPMT_SIGNATURE) + ":" + b64(tpm2-tools PCR file)`, over the SHA-256 bank, with the nonce's
/// ASCII bytes as qualifying data and PCR 16 always included: PCR 16 holds SHA-256 of the agent's
/// public key PEM, extended once after a reset, which is how the verifier ties that key to the TPM.
public struct KeylimeQuoter: Sendable {
    /// Keylime's data PCR (config.TPM_DATA_PCR).
    public static let dataPCR = 16
    public let tpm: TPM
    public let attestationKeyHandle: UInt32
    public let attestationKeyType: AttestationKeyType
    /// Quotes are TPM work a client triggers: a bounded number run and wait; the rest are refused.
    public let gate: TPMGate

    public init(tpm: TPM, attestationKeyHandle: UInt32, attestationKeyType: AttestationKeyType, gate: TPMGate = TPMGate()) {
        self.tpm = tpm
        self.attestationKeyHandle = attestationKeyHandle
        self.attestationKeyType = attestationKeyType
        self.gate = gate
    }

    /// Keylime's name of the quote signature scheme.
    public var signAlgorithm: String { attestationKeyType == .rsa2048 ? "rsassa" : "ecdsa" }

    /// Resets PCR 16 and extends SHA-256(`publicKeyPEM`) into it (Keylime's verifier expects
    /// PCR16 == SHA-256(zeros || SHA-256(pubkey as sent))).
    public func bind(publicKeyPEM: String) async throws(TPMError) {
        try await tpm.reset(pcr: Self.dataPCR)
        try await tpm.extend(pcr: Self.dataPCR, sha256: Array(SHA256.hash(data: Array(publicKeyPEM.utf8))))
    }

    /// The PCRs of a Keylime mask (bit i = PCR i), plus PCR 16.
    public static func pcrs(mask: UInt32) -> [Int] {
        var set = Set((0..<24).filter { mask & (1 << UInt32($0)) != 0 })
        set.insert(dataPCR)
        return set.sorted()
    }

    /// Quotes `pcrs` with `nonce`; returns Keylime's quote string.
    /// Throws `TPMGate.Busy` at once when too many quotes run and wait.
    public func quote(nonce: String, pcrs: [Int]) async throws -> String {
        let (tpm, handle) = (tpm, attestationKeyHandle)
        let (quote, values) = try await gate.run {
            try await tpm.quoteWithValues(attestationKeyHandle: handle, nonce: Array(nonce.utf8), pcrs: pcrs)
        }
        return "r" + Data(quote.attest).base64EncodedString() + ":" + Data(quote.signature).base64EncodedString() + ":"
            + Data(PCRFile.serialize(sha256: values)).base64EncodedString()
    }
}

/// What the host offers besides the quote: boot time, and the kernel's IMA and measured-boot logs
/// when the mask asks for PCR 10 or PCR 0 and the node may read them.
enum HostLogs {
    static let imaPath = "/sys/kernel/security/ima/ascii_runtime_measurements"
    static let bootLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"

    /// Seconds since the epoch at which the host booted (/proc/stat `btime`), 0 if unknown.
    static func bootTime() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        return 0
    }

    /// IMA entries from `entry` on (0-based), and the entry number the list starts at.
    static func imaList(from entry: Int) -> (text: String, entry: Int)? {
        guard let text = try? String(contentsOfFile: imaPath, encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let count = lines.last == "" ? lines.count - 1 : lines.count
        let start = (0...count).contains(entry) ? entry : 0
        let slice = lines[start..<count]
        return (slice.isEmpty ? "" : slice.joined(separator: "\n") + "\n", start)
    }

    static func bootLog() -> String? {
        FileManager.default.contents(atPath: bootLogPath).map { $0.base64EncodedString() }
    }
}
