import Attestation
import Foundation
import Testing

/// Profile rules and path references that need no TPM.
@Suite struct ProfileRulesTests {
    static let profilePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../firmware-profiles/swtpm-dev.json").standardized.path

    @Test(arguments: [[Int](), [0, 2, 23], [16], [0, 0]])
    func profileCheckRefusesSealPCRsThatProtectNothing(pcrs: [Int]) throws {
        var profile = try FirmwareProfile.load(path: Self.profilePath)
        profile.seal.pcrs = pcrs
        #expect { try profile.validate() } throws: { ($0 as? AttestationError)?.reason.contains("seal.pcrs") == true }
    }

    @Test(arguments: [[String](), ["MODEL"], ["abcd"], [String(repeating: "g", count: 64)], ["model", ""]])
    func profileCheckRefusesChatTemplateEntriesThatNameNothing(entries: [String]) throws {
        var profile = try FirmwareProfile.load(path: Self.profilePath)
        profile.allowedChatTemplates = entries
        #expect { try profile.validate() } throws: { ($0 as? AttestationError)?.reason.contains("allowedChatTemplates") == true }
    }

    @Test func acceptsChatTemplateDigestsInEitherCaseAndTheModelsOwn() throws {
        var profile = try FirmwareProfile.load(path: Self.profilePath)
        #expect(profile.allowedChatTemplates == nil)
        profile.allowedChatTemplates = ["model", String(repeating: "aB", count: 32)]
        #expect(throws: Never.self) { try profile.validate() }
        // The field round-trips through the profile's JSON, and stays absent when nil.
        let decoded = try JSONDecoder().decode(FirmwareProfile.self, from: JSONEncoder().encode(profile))
        #expect(decoded.allowedChatTemplates == profile.allowedChatTemplates)
    }

    @Test func everyCommittedProfileSealsToUnresettablePCRs() throws {
        let dir = URL(fileURLWithPath: Self.profilePath).deletingLastPathComponent()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }
        #expect(!files.isEmpty)
        for file in files {
            #expect(throws: Never.self) { try FirmwareProfile.load(path: dir.appendingPathComponent(file).path) }
        }
    }

    @Test func resolvesARelativeStateDirAgainstTheCurrentDirectory() throws {
        // SECURENODE_STATE_DIR=.state securenode enroll --profile firmware-profiles/swtpm-dev.json:
        // the user means ./.state, not firmware-profiles/.state.
        let base = URL(fileURLWithPath: "/repo/firmware-profiles", isDirectory: true)
        let cwd = FileManager.default.currentDirectoryPath
        let url = try EnrollmentVerifier.resolve("${SECURENODE_STATE_DIR}/swtpm/ca/issuercert.pem", relativeTo: base,
                                                 environment: ["SECURENODE_STATE_DIR": ".state"]).get()
        #expect(url.path == URL(fileURLWithPath: cwd).appendingPathComponent(".state/swtpm/ca/issuercert.pem").standardized.path)
        // Absolute values are used as they are; plain relative paths stay relative to the profile.
        #expect(try EnrollmentVerifier.resolve("${D}/ca.pem", relativeTo: base, environment: ["D": "/var/lib/securenode"]).get().path
                == "/var/lib/securenode/ca.pem")
        #expect(try EnrollmentVerifier.resolve("ek-cas/root.pem", relativeTo: base, environment: [:]).get().path
                == "/repo/firmware-profiles/ek-cas/root.pem")
    }

    @Test func refusesAnUnsetVariableByName() {
        let result = EnrollmentVerifier.resolve("${SECURENODE_STATE_DIR}/swtpm/ca/issuercert.pem",
                                                relativeTo: URL(fileURLWithPath: "/p"), environment: [:])
        guard case .failure(let error) = result else { Issue.record("an unset variable resolved to \(result)"); return }
        #expect(error.reason.contains("SECURENODE_STATE_DIR"))
    }
}
