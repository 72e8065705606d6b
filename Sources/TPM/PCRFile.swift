/// tpm2-tools' serialized PCR file: what `tpm2_quote -o` writes, `tpm2_checkquote -f` reads, and
/// Keylime's verifier parses as the third part of a quote (keylime/tpm/tpm_util.py
/// `__get_pcrs_from_blob`). It is a little-endian dump of C structures, not a TPM marshaling:
///
///     u32 count (1)  |  16 x TPMS_PCR_SELECTION {u16 hashAlg, u8 sizeofSelect (3), u8 select[3], 2 padding}
///     u32 lists      |  lists x TPML_DIGEST {u32 count, 8 x TPM2B_DIGEST {u16 size, u8 buffer[64]}}
///
/// PCRs go in ascending order, at most eight per TPML_DIGEST (what one TPM2_PCR_Read returns).
public enum PCRFile {
    /// The file for SHA-256 PCR `values` (index -> 32-byte value), indices 0...23.
    public static func serialize(sha256 values: [Int: [UInt8]]) -> [UInt8] {
        let indices = values.keys.filter { (0..<24).contains($0) }.sorted()
        var out: [UInt8] = []
        out.reserveCapacity(4 + 16 * 8 + 4 + 532 * ((indices.count + 7) / 8))
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        u32(1)
        var select: [UInt8] = [0, 0, 0]
        for i in indices { select[i / 8] |= 1 << (i % 8) }
        u16(0x000B)
        out.append(3)
        out += select
        out += [0, 0]
        out += [UInt8](repeating: 0, count: 15 * 8)
        let chunks = stride(from: 0, to: indices.count, by: 8).map { Array(indices[$0..<min($0 + 8, indices.count)]) }
        u32(UInt32(chunks.count))
        for chunk in chunks {
            u32(UInt32(chunk.count))
            for slot in 0..<8 {
                let value = slot < chunk.count ? Array((values[chunk[slot]] ?? []).prefix(64)) : []
                u16(UInt16(value.count))
                out += value + [UInt8](repeating: 0, count: 64 - value.count)
            }
        }
        return out
    }
}
