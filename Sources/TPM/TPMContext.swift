import CTSS2
#if canImport(Glibc)
import Glibc
#endif

/// One connection to a TPM through tpm2-tss ESAPI. It owns the TCTI and ESYS contexts.
///
/// ESAPI calls block on a socket or device, so a `TPMContext` is used from one thread at a time,
/// never from Swift's cooperative pool: ``TPM`` serializes every call onto its own dispatch queue.
/// It is `@unchecked Sendable` for that hand-off only.
final class TPMContext: @unchecked Sendable {
    private var tcti: OpaquePointer?
    private var esys: OpaquePointer?
    let tctiConfiguration: String

    /// Connects through a TCTI string (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`) and
    /// sends Startup(CLEAR), accepting a TPM that has already started.
    init(tcti configuration: String) throws(TPMError) {
        tctiConfiguration = configuration
        // tpm2-tss logs expected misses (e.g. probing an absent persistent handle) to stderr; errors
        // reach the caller as TPMError instead. TSS2_LOG set by the operator still wins.
        setenv("TSS2_LOG", "all+NONE", 0)
        var t: OpaquePointer?
        let rc = configuration.withCString { Tss2_TctiLdr_Initialize($0, &t) }
        guard rc == SN_RC_SUCCESS, t != nil else {
            throw TPMError(.unavailable, command: "connect (\(configuration))", code: rc,
                           detail: Tss2_RC_Decode(rc).map { String(cString: $0) } ?? "TCTI initialization failed")
        }
        tcti = t
        var e: OpaquePointer?
        let erc = Esys_Initialize(&e, t, nil)
        guard erc == SN_RC_SUCCESS else {
            Tss2_TctiLdr_Finalize(&tcti)
            throw TPMError(command: "Esys_Initialize", rc: erc)
        }
        esys = e
        let src = Esys_Startup(e, SN_SU_CLEAR)
        if src != SN_RC_SUCCESS && src != SN_RC_INITIALIZE {
            Esys_Finalize(&esys)
            Tss2_TctiLdr_Finalize(&tcti)
            throw TPMError(command: "TPM2_Startup", rc: src)
        }
    }

    deinit {
        if esys != nil { Esys_Finalize(&esys) }
        if tcti != nil { Tss2_TctiLdr_Finalize(&tcti) }
    }

    var ctx: OpaquePointer? { esys }

    // MARK: PCRs

    static func selection(bank: TPM2_ALG_ID, indices: [Int]) -> TPML_PCR_SELECTION {
        var list = TPML_PCR_SELECTION()
        list.count = 1
        list.pcrSelections.0.hash = bank
        list.pcrSelections.0.sizeofSelect = 3
        withUnsafeMutableBytes(of: &list.pcrSelections.0.pcrSelect) { raw in
            for i in indices where i >= 0 && i < 24 { raw[i / 8] |= UInt8(1 << (i % 8)) }
        }
        return list
    }

    /// Values of the given PCRs in one bank (ESAPI returns at most eight per call; we loop).
    func pcrRead(bank: TPM2_ALG_ID, indices: [Int]) throws(TPMError) -> [Int: [UInt8]] {
        var result: [Int: [UInt8]] = [:]
        var remaining = indices.sorted()
        while !remaining.isEmpty {
            var selection = Self.selection(bank: bank, indices: remaining)
            var counter: UInt32 = 0
            var selOut: UnsafeMutablePointer<TPML_PCR_SELECTION>?
            var values: UnsafeMutablePointer<TPML_DIGEST>?
            try check(Esys_PCR_Read(esys, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &selection, &counter, &selOut, &values),
                      "TPM2_PCR_Read")
            defer { Esys_Free(selOut); Esys_Free(values) }
            guard let selOut, let values else { break }
            var returned: [Int] = []
            if selOut.pointee.count > 0 {
                withUnsafeBytes(of: selOut.pointee.pcrSelections.0.pcrSelect) { raw in
                    for i in 0..<24 where raw[i / 8] & UInt8(1 << (i % 8)) != 0 { returned.append(i) }
                }
            }
            let digests = withUnsafeBytes(of: values.pointee.digests) { raw -> [[UInt8]] in
                let items = raw.bindMemory(to: TPM2B_DIGEST.self)
                return (0..<Int(values.pointee.count)).map { TPM2B.bytes(size: items[$0].size, buffer: items[$0].buffer) }
            }
            guard !returned.isEmpty, returned.count == digests.count else {
                throw TPMError(.state, command: "TPM2_PCR_Read", detail: "PCRs \(remaining) are not allocated in this bank")
            }
            for (i, d) in zip(returned, digests) { result[i] = d }
            remaining.removeAll { returned.contains($0) }
        }
        return result
    }

    /// Extends `digest` (SHA-256) into PCR `index`.
    func pcrExtend(index: Int, sha256 digest: [UInt8]) throws(TPMError) {
        var values = TPML_DIGEST_VALUES()
        values.count = 1
        values.digests.0.hashAlg = SN_ALG_SHA256
        withUnsafeMutableBytes(of: &values.digests.0.digest) { raw in raw.copyBytes(from: digest.prefix(32)) }
        try check(Esys_PCR_Extend(esys, SN_ESYS_TR_PCR0 + UInt32(index), SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &values),
                  "TPM2_PCR_Extend(PCR \(index))")
    }

    /// TPM2_PCR_Reset: sets a resettable PCR (16, the debug PCR, or 23 at locality 0) back to zeros.
    func pcrReset(index: Int) throws(TPMError) {
        try check(Esys_PCR_Reset(esys, SN_ESYS_TR_PCR0 + UInt32(index), SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE),
                  "TPM2_PCR_Reset(PCR \(index))")
    }

    // MARK: objects

    /// Creates a primary key in `hierarchy` from `template`; the caller flushes the handle.
    func createPrimary(hierarchy: ESYS_TR, template: TPM2B_PUBLIC) throws(TPMError) -> (handle: ESYS_TR, public: TPM2B_PUBLIC) {
        var sensitive = TPM2B_SENSITIVE_CREATE()
        var inPublic = template
        var outside = TPM2B_DATA()
        var creationPCR = TPML_PCR_SELECTION()
        var handle: ESYS_TR = SN_ESYS_TR_NONE
        var outPublic: UnsafeMutablePointer<TPM2B_PUBLIC>?
        var creationData: UnsafeMutablePointer<TPM2B_CREATION_DATA>?
        var creationHash: UnsafeMutablePointer<TPM2B_DIGEST>?
        var ticket: UnsafeMutablePointer<TPMT_TK_CREATION>?
        try check(Esys_CreatePrimary(esys, hierarchy, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                     &sensitive, &inPublic, &outside, &creationPCR,
                                     &handle, &outPublic, &creationData, &creationHash, &ticket), "TPM2_CreatePrimary")
        defer { Esys_Free(outPublic); Esys_Free(creationData); Esys_Free(creationHash); Esys_Free(ticket) }
        guard let outPublic else { throw TPMError(.state, command: "TPM2_CreatePrimary", detail: "no public area returned") }
        return (handle, outPublic.pointee)
    }

    func flush(_ handle: ESYS_TR) {
        _ = Esys_FlushContext(esys, handle)
    }

    /// Releases ESAPI's record of a persistent or NV handle (the object stays in the TPM).
    func close(_ handle: ESYS_TR) {
        var h = handle
        _ = Esys_TR_Close(esys, &h)
    }

    /// The ESAPI handle of a persistent object or NV index, or nil when the TPM has none there.
    func fromTPMHandle(_ tpmHandle: UInt32) throws(TPMError) -> ESYS_TR? {
        var object: ESYS_TR = SN_ESYS_TR_NONE
        let rc = Esys_TR_FromTPMPublic(esys, tpmHandle, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &object)
        if rc == SN_RC_SUCCESS { return object }
        let error = TPMError(command: "TPM2_ReadPublic(0x\(String(tpmHandle, radix: 16)))", rc: rc)
        if error.kind == .unavailable { throw error }
        return nil
    }

    func readPublic(_ handle: ESYS_TR) throws(TPMError) -> TPM2B_PUBLIC {
        var outPublic: UnsafeMutablePointer<TPM2B_PUBLIC>?
        var name: UnsafeMutablePointer<TPM2B_NAME>?
        var qualified: UnsafeMutablePointer<TPM2B_NAME>?
        try check(Esys_ReadPublic(esys, handle, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &outPublic, &name, &qualified),
                  "TPM2_ReadPublic")
        defer { Esys_Free(outPublic); Esys_Free(name); Esys_Free(qualified) }
        guard let outPublic else { throw TPMError(.state, command: "TPM2_ReadPublic", detail: "no public area") }
        return outPublic.pointee
    }

    /// Makes a transient object persistent at `persistentHandle` (owner authorization, empty auth).
    func evictControl(_ transient: ESYS_TR, persistentHandle: UInt32) throws(TPMError) -> ESYS_TR {
        var newHandle: ESYS_TR = SN_ESYS_TR_NONE
        try check(Esys_EvictControl(esys, SN_ESYS_TR_RH_OWNER, transient, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                    persistentHandle, &newHandle), "TPM2_EvictControl(0x\(String(persistentHandle, radix: 16)))")
        return newHandle
    }

    /// Removes the persistent object `handle` (owner authorization).
    func evict(_ handle: ESYS_TR, persistentHandle: UInt32) throws(TPMError) {
        var out: ESYS_TR = SN_ESYS_TR_NONE
        try check(Esys_EvictControl(esys, SN_ESYS_TR_RH_OWNER, handle, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                    persistentHandle, &out), "TPM2_EvictControl(remove 0x\(String(persistentHandle, radix: 16)))")
    }

    /// Reads an NV index whole (e.g. the EK certificate at 0x01c00002), in chunks.
    func nvRead(index: UInt32) throws(TPMError) -> [UInt8]? {
        guard let handle = try fromTPMHandle(index) else { return nil }
        defer { close(handle) }
        var nvPublic: UnsafeMutablePointer<TPM2B_NV_PUBLIC>?
        var nvName: UnsafeMutablePointer<TPM2B_NAME>?
        try check(Esys_NV_ReadPublic(esys, handle, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &nvPublic, &nvName),
                  "TPM2_NV_ReadPublic(0x\(String(index, radix: 16)))")
        let size = Int(nvPublic?.pointee.nvPublic.dataSize ?? 0)
        Esys_Free(nvPublic)
        Esys_Free(nvName)
        var out: [UInt8] = []
        out.reserveCapacity(size)
        while out.count < size {
            let chunk = UInt16(min(512, size - out.count))
            var data: UnsafeMutablePointer<TPM2B_MAX_NV_BUFFER>?
            try check(Esys_NV_Read(esys, handle, handle, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE,
                                   chunk, UInt16(out.count), &data), "TPM2_NV_Read(0x\(String(index, radix: 16)))")
            guard let data else { break }
            out += TPM2B.bytes(size: data.pointee.size, buffer: data.pointee.buffer)
            Esys_Free(data)
        }
        return out
    }

    /// Flushes every transient object and loaded session: recovers a TPM without a resource
    /// manager (swtpm) whose three object slots were left full (`0x902`) by a crashed client.
    func flushAllTransients() throws(TPMError) {
        for first in [SN_TRANSIENT_FIRST, SN_LOADED_SESSION_FIRST] {
            var more: TPMI_YES_NO = 0
            var data: UnsafeMutablePointer<TPMS_CAPABILITY_DATA>?
            try check(Esys_GetCapability(esys, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, SN_CAP_HANDLES, first, 64,
                                         &more, &data), "TPM2_GetCapability(handles)")
            defer { Esys_Free(data) }
            guard let data else { continue }
            let handles = data.pointee.data.handles
            let list = withUnsafeBytes(of: handles.handle) { Array($0.bindMemory(to: TPM2_HANDLE.self).prefix(Int(handles.count))) }
            for h in list {
                if let tr = try fromTPMHandle(h) { flush(tr) }
            }
        }
    }

    // MARK: quote

    /// TPM2_Quote over `selection` with `nonce` as qualifying data: returns the marshaled
    /// TPMS_ATTEST (the signed bytes) and the marshaled TPMT_SIGNATURE.
    func quote(signer: ESYS_TR, nonce: [UInt8], bank: TPM2_ALG_ID, indices: [Int]) throws(TPMError) -> (attest: [UInt8], signature: [UInt8]) {
        var qualifying = TPM2B.data(nonce)
        var scheme = TPMT_SIG_SCHEME()
        scheme.scheme = SN_ALG_NULL
        var selection = Self.selection(bank: bank, indices: indices)
        var quoted: UnsafeMutablePointer<TPM2B_ATTEST>?
        var signature: UnsafeMutablePointer<TPMT_SIGNATURE>?
        try check(Esys_Quote(esys, signer, SN_ESYS_TR_PASSWORD, SN_ESYS_TR_NONE, SN_ESYS_TR_NONE, &qualifying, &scheme, &selection,
                             &quoted, &signature), "TPM2_Quote")
        defer { Esys_Free(quoted); Esys_Free(signature) }
        guard let quoted, let signature else { throw TPMError(.state, command: "TPM2_Quote", detail: "no quote returned") }
        let attest = TPM2B.bytes(size: quoted.pointee.size, buffer: quoted.pointee.attestationData)
        let sig = try TPM2B.marshal(signature.pointee, Tss2_MU_TPMT_SIGNATURE_Marshal, "TPMT_SIGNATURE")
        return (attest, sig)
    }
}
