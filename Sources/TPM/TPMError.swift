import CTSS2

/// A failed TPM operation: which command, the raw return code, and tpm2-tss's decoding of it.
public struct TPMError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The TPM (or its TCTI) could not be reached: absent device, stopped simulator, closed socket.
        case unavailable
        /// The TPM answered with an error code.
        case command
        /// Something this node asked for does not fit the TPM's state (e.g. an unexpected key).
        case state
    }

    public let kind: Kind
    public let command: String
    public let code: UInt32
    public let decoded: String

    public init(_ kind: Kind, command: String, code: UInt32 = 0, detail: String) {
        self.kind = kind
        self.command = command
        self.code = code
        self.decoded = detail
    }

    init(command: String, rc: TSS2_RC) {
        self.command = command
        self.code = rc
        self.decoded = Tss2_RC_Decode(rc).map { String(cString: $0) } ?? "unknown"
        // Layer 0x0A (TCTI) and the ESAPI "no connection"/IO codes mean the TPM is not reachable.
        let layer = (rc & SN_RC_LAYER_MASK) >> 16
        let base = rc & 0xFFFF
        let ioLike: Set<UInt32> = [0x0A, 0x0B, 0x0C]  // TSS2_BASE_RC_IO_ERROR, _TRY_AGAIN, _NO_CONNECTION
        self.kind = (layer == 0x0A || ioLike.contains(base) && layer != 0) ? .unavailable : .command
    }

    /// TPM_RC_OBJECT_MEMORY (0x902) or TPM_RC_SESSION_MEMORY (0x903): no free slot.
    public var isOutOfObjectMemory: Bool { kind == .command && (code & 0xFFF == 0x902 || code & 0xFFF == 0x903) }

    public var description: String {
        switch kind {
        case .unavailable: "TPM unavailable during \(command): \(decoded) (0x\(String(code, radix: 16)))"
        case .command: "\(command) failed: \(decoded) (0x\(String(code, radix: 16)))"
        case .state: "\(command): \(decoded)"
        }
    }
}

@inline(__always)
func check(_ rc: TSS2_RC, _ command: @autoclosure () -> String) throws(TPMError) {
    guard rc == SN_RC_SUCCESS else { throw TPMError(command: command(), rc: rc) }
}
