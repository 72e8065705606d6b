import CTSS2

/// Copying between Swift byte arrays and tpm2-tss's fixed-size `TPM2B_*` buffers.
enum TPM2B {
    /// Bytes of a `(size, buffer)` pair, with size clamped to the buffer's capacity.
    static func bytes<T>(size: UInt16, buffer: T) -> [UInt8] {
        withUnsafeBytes(of: buffer) { Array($0.prefix(Int(size))) }
    }

    /// Writes `bytes` into a fixed buffer and returns the size, or nil if they do not fit.
    static func fill<T>(_ buffer: inout T, with bytes: [UInt8]) -> UInt16? {
        withUnsafeMutableBytes(of: &buffer) { raw -> UInt16? in
            guard bytes.count <= raw.count else { return nil }
            raw.copyBytes(from: bytes)
            return UInt16(bytes.count)
        }
    }

    static func digest(_ bytes: [UInt8]) -> TPM2B_DIGEST {
        var d = TPM2B_DIGEST()
        d.size = fill(&d.buffer, with: bytes) ?? 0
        return d
    }

    static func data(_ bytes: [UInt8]) -> TPM2B_DATA {
        var d = TPM2B_DATA()
        d.size = fill(&d.buffer, with: bytes) ?? 0
        return d
    }

    /// Marshals any tss2 type with its `Tss2_MU_*_Marshal` function.
    static func marshal<T>(_ value: T, _ fn: (UnsafePointer<T>?, UnsafeMutablePointer<UInt8>?, Int, UnsafeMutablePointer<Int>?) -> TSS2_RC,
                           _ name: String) throws(TPMError) -> [UInt8] {
        var value = value
        var out = [UInt8](repeating: 0, count: MemoryLayout<T>.size + 64)
        var offset = 0
        let rc = out.withUnsafeMutableBufferPointer { buf in
            fn(&value, buf.baseAddress, buf.count, &offset)
        }
        try check(rc, "marshal \(name)")
        return Array(out.prefix(offset))
    }

    /// Unmarshals a tss2 type from bytes, requiring every byte to be used.
    static func unmarshal<T>(_ bytes: [UInt8], into value: inout T,
                             _ fn: (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<Int>?, UnsafeMutablePointer<T>?) -> TSS2_RC,
                             _ name: String) throws(TPMError) {
        var offset = 0
        let rc = bytes.withUnsafeBufferPointer { buf in fn(buf.baseAddress, buf.count, &offset, &value) }
        try check(rc, "unmarshal \(name)")
        guard offset == bytes.count else {
            throw TPMError(.state, command: "unmarshal \(name)", detail: "\(bytes.count - offset) trailing bytes")
        }
    }
}
