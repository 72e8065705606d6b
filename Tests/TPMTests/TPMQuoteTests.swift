import TPMTestSupport
import Foundation
import SoftwareTPM
import Testing
import TPM

@Suite(.enabled(if: TPMTools.swtpm, "swtpm is not installed; run scripts/setup.sh"))
struct TPMQuoteTests {
    @Test func readsAndExtendsPCRs() async throws {
        let t = try await RunningTPM()
        let before = try await t.tpm.pcrValues([0, 14, 15])
        #expect(before[15] == [UInt8](repeating: 0, count: 32))
        let digest = [UInt8](repeating: 0xAB, count: 32)
        try await t.tpm.extend(pcr: 15, sha256: digest)
        let after = try await t.tpm.pcrValues([15])
        // PCR_new = SHA-256(PCR_old || digest), checked against tpm2_pcrread, an independent reader.
        let read = try TPMTools.run("tpm2_pcrread", ["sha256:15", "-T", t.swtpm.tcti])
        #expect(read.status == 0, "\(read.output)")
        let hex = after[15]!.map { String(format: "%02X", $0) }.joined()
        #expect(read.output.contains("0x" + hex), "\(read.output)")
        #expect(after[15] != before[15])
    }

    @Test func readsEndorsementKeyAndCertificate() async throws {
        let t = try await RunningTPM()
        let ek = try await t.tpm.endorsementKey()
        #expect(ek.publicArea.count > 256)
        let cert = try #require(ek.certificateDER)
        #expect(cert.first == 0x30)  // DER SEQUENCE
    }

    @Test func attestationKeyPersistsAcrossConnections() async throws {
        let t = try await RunningTPM()
        let first = try await t.tpm.attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        // A new connection (as after a node restart) finds the same key, not a new one.
        let again = try await TPM(tcti: t.swtpm.tcti).attestationKey(.rsa2048, persistentHandle: 0x8101_0002)
        #expect(first == again)
    }

    @Test(arguments: [AttestationKeyType.rsa2048, .eccP256])
    func quotePassesTpm2Checkquote(type: AttestationKeyType) async throws {
        try #require(TPMTools.tpm2Tools, "tpm2-tools is not installed")
        let t = try await RunningTPM()
        let ak = try await t.tpm.attestationKey(type, persistentHandle: 0x8101_0010)
        try await t.tpm.extend(pcr: 15, sha256: [UInt8](repeating: 7, count: 32))
        let nonce: [UInt8] = Array("0123456789abcdef".utf8)
        let pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 15]
        let quote = try await t.tpm.quote(attestationKeyHandle: ak.persistentHandle, nonce: nonce, pcrs: pcrs)
        let values = try await t.tpm.pcrValues(pcrs)
        try Data(quote.attest).write(to: URL(fileURLWithPath: t.file("quote.msg")))
        try Data(quote.signature).write(to: URL(fileURLWithPath: t.file("quote.sig")))
        try Data(ak.publicArea).write(to: URL(fileURLWithPath: t.file("ak.pub")))
        try Data(tpm2ToolsPCRFile(values: values)).write(to: URL(fileURLWithPath: t.file("quote.pcrs")))
        let nonceHex = nonce.map { String(format: "%02x", $0) }.joined()
        let args = ["-u", t.file("ak.pub"), "-m", t.file("quote.msg"), "-s", t.file("quote.sig"),
                    "-f", t.file("quote.pcrs"), "-g", "sha256"]
        let ok = try TPMTools.run("tpm2_checkquote", args + ["-q", nonceHex])
        #expect(ok.status == 0, "\(ok.output)")
        // The same quote with another nonce must be refused by the independent checker.
        let bad = try TPMTools.run("tpm2_checkquote", args + ["-q", "00" + nonceHex.dropFirst(2)])
        #expect(bad.status != 0)
    }

    @Test func stoppedTPMIsReportedAndRecoveredFrom() async throws {
        let t = try await RunningTPM()
        _ = try await t.tpm.pcrValues([0])
        t.swtpm.stop()
        do {
            _ = try await t.tpm.pcrValues([0])
            Issue.record("a stopped TPM answered")
        } catch {
            #expect(error.kind == .unavailable, "\(error)")
            #expect(error.description.contains("TPM2_PCR_Read") || error.description.contains("connect"), "\(error)")
        }
        // The simulator comes back on the same port; the same TPM object reconnects by itself.
        try t.swtpm.start()
        let again = try await t.tpm.pcrValues([0])
        #expect(again[0]?.count == 32)
    }
}

@Suite(.enabled(if: TPMTools.swtpm && TPMTools.tpm2Tools, "swtpm or tpm2-tools is not installed"))
struct TPMSlotRecoveryTests {
    @Test func recoversWhenAnotherClientLeftEveryObjectSlotFull() async throws {
        let t = try await RunningTPM()
        // Another client (tpm2-tools, no resource manager) creates primaries and leaves them loaded.
        for i in 0..<3 {
            let r = try TPMTools.run("tpm2_createprimary", ["-C", "o", "-G", "ecc256", "-c", t.file("leak\(i).ctx"), "-T", t.swtpm.tcti])
            try #require(r.status == 0, "\(r.output)")
        }
        let full = try TPMTools.run("tpm2_createprimary", ["-C", "o", "-G", "ecc256", "-c", t.file("leak3.ctx"), "-T", t.swtpm.tcti])
        #expect(full.status != 0 && full.output.contains("0x902"), "\(full.output)")
        // The node still quotes: it flushes the stale transients and retries.
        let ak = try await t.tpm.attestationKey(.eccP256, persistentHandle: 0x8101_0011)
        let quote = try await t.tpm.quote(attestationKeyHandle: ak.persistentHandle, nonce: Array("slots".utf8), pcrs: [0, 15])
        #expect(!quote.attest.isEmpty)
    }
}

@Suite(.enabled(if: TPMTools.swtpm && TPMTools.tpm2Tools, "swtpm or tpm2-tools is not installed"))
struct TPMRestartTests {
    /// A restart at the worst moment for a verifier: right after `SoftwareTPM.stop` and `start`, the
    /// TPM's clock must still be safe (TPMS_CLOCK_INFO.safe, read by tpm2_readclock), or Keylime
    /// refuses every quote until the clock's next NV update (`e2e-keylime.sh` failed that way).
    /// An unordered stop (CMD_SHUTDOWN alone) restarts it unsafe; the orderly TPM2_Shutdown keeps it.
    @Test func restartRightAfterAStopKeepsTheTPMClockSafe() async throws {
        let t = try await RunningTPM()
        func safe() throws -> Bool? {
            let r = try TPMTools.run("tpm2_readclock", ["-T", t.swtpm.tcti])
            try #require(r.status == 0, "\(r.output)")
            if r.output.contains("safe: yes") { return true }
            if r.output.contains("safe: no") { return false }
            return nil
        }
        // Whatever the copied state says, the clock becomes safe after its next NV update (about 4 s).
        let deadline = Date().addingTimeInterval(15)
        while try safe() != true && Date() < deadline { try await Task.sleep(for: .milliseconds(250)) }
        try #require(try safe() == true, "the TPM clock never became safe")
        let swtpm = t.swtpm  // stop and start block: off the cooperative pool
        try await offPool { swtpm.stop(); try swtpm.start() }
        #expect(try safe() == true, "the restarted TPM reports an unsafe clock: the stop was not orderly")
    }
}
