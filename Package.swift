// swift-tools-version: 6.0
import PackageDescription

// Settings every target shares (see ../shared/design/STYLE.md).
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Numeric targets (Kernels, Inference) are optimized even in debug builds, so that `swift test` can
// run the real model; on x86-64 they are compiled for AVX2/FMA/F16C CPUs (Haswell, 2013, and later).
#if arch(x86_64)
let numeric: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"])]
#else
let numeric: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]
#endif

let package = Package(
    name: "SecureNode",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "securenode", targets: ["SecureNode"]),
        .library(name: "ModelFormat", targets: ["ModelFormat"]),
        .library(name: "ModelSigning", targets: ["ModelSigning"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.3.0"),
        .package(url: "https://github.com/attaswift/BigInt.git", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.5.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    ],
    targets: [
        // GGUF reader: validates every field of untrusted model files before it allocates or slices.
        .target(name: "ModelFormat", swiftSettings: strict),
        // OpenSSF model-signing bundles (sigstore bundle v0.3 + DSSE + in-toto), key and X.509 methods.
        .target(
            name: "ModelSigning",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        // tpm2-tss: ESAPI, TCTI loader, marshaling and return-code decoding (libtss2-dev).
        .systemLibrary(name: "CTSS2", pkgConfig: "tss2-esys", providers: [.apt(["libtss2-dev"])]),
        // The only importer of CTSS2: context, PCRs, keys, quotes.
        .target(name: "TPM", dependencies: ["CTSS2", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        // A real swtpm for development and tests: provision (EK certificate from a local CA), start, stop.
        .target(name: "SoftwareTPM", swiftSettings: strict),
        // Pure-Swift verification of TPM evidence: structures, quotes, event log, profiles, appraisal.
        // Never imports TPM: orchestrators verify without one.
        .target(
            name: "Attestation",
            dependencies: [
                "ModelSigning",
                .product(name: "BigInt", package: "BigInt"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        // Numeric kernels: block formats (F32/F16/BF16/Q4_0/Q4_1/Q8_0/Q4_K/Q6_K), reference dequantizers and
        // dot products, activation quantizers, vector ops, matrix products. Optimized even in debug builds
        // so that the test suite can run the real model.
        .target(name: "Kernels", dependencies: ["CKernels"], swiftSettings: strict + numeric),
        // The innermost kernels in C with AVX2/FMA/F16C intrinsics (quantized matrix products, attention,
        // SwiGLU, activation quantization) and the thread pool; each bit-identical to its Swift reference
        // in Kernels, which the tests compare it with. Optimized in debug builds too.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        // Llama-family transformer on the CPU: config, weights, KV cache, tokenizer, chat template, sampler, generation.
        .target(
            name: "Inference",
            dependencies: ["Kernels", "ModelFormat"],
            swiftSettings: strict + numeric
        ),
        // The node's composition of TPM, attestation and signed models: measure, event log, evidence.
        .target(
            name: "NodeCore",
            dependencies: ["TPM", "Attestation", "ModelSigning", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // HTTP endpoints (Hummingbird 2): attestation, enrollment, health.
        .target(
            name: "NodeHTTP",
            dependencies: ["NodeCore", "Attestation", "TPM", "ModelSigning", .product(name: "Hummingbird", package: "hummingbird")],
            swiftSettings: strict
        ),
        // The service: configuration file, OpenAI-compatible API, continuous-batching scheduler,
        // API keys, limits, Prometheus metrics, receipts.
        .target(
            name: "NodeService",
            dependencies: [
                "NodeHTTP", "NodeCore", "Attestation", "Inference", "ModelSigning",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Accelerator backends behind ComputeBackend: device specs (every number sourced), the roofline
        // model, ModeledBackend (computes on the CPU, charges the target's modeled time), modeled
        // device attestation (SPDM-style signed measurements).
        .target(
            name: "Accelerators",
            dependencies: [
                "Inference", "Kernels", "Attestation", "ModelSigning",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        // Keylime agent API (pull mode, 2.x): registration with credential activation, identity and
        // integrity quotes in Keylime's formats, the U/V key exchange, revocation notices; on its own
        // listener with mutual TLS, apart from the OpenAI API.
        .target(
            name: "KeylimeAgent",
            dependencies: [
                "TPM", "ModelSigning",
                .product(name: "BigInt", package: "BigInt"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SecureNode",
            dependencies: [
                "ModelFormat", "ModelSigning", "Attestation", "NodeCore", "NodeHTTP", "NodeService", "TPM", "SoftwareTPM",
                .product(name: "Hummingbird", package: "hummingbird"), "Inference", "Accelerators", "KeylimeAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Test-only: writes GGUF files (valid, or broken on purpose) for the ModelFormat and Inference tests.
        // Test-only: a provisioned swtpm per test (copied from one template), tpm2-tools helpers.
        .target(name: "TPMTestSupport", dependencies: ["TPM", "SoftwareTPM"], path: "Tests/Support/TPMTestSupport", swiftSettings: strict),
        .target(name: "GGUFTestSupport", dependencies: ["ModelFormat"], path: "Tests/Support/GGUFTestSupport", swiftSettings: strict),
        .testTarget(name: "ModelFormatTests", dependencies: ["ModelFormat", "GGUFTestSupport"], swiftSettings: strict),
        .testTarget(name: "NodeServiceTests", dependencies: ["NodeService", "Attestation", .product(name: "Crypto", package: "swift-crypto")],
                    swiftSettings: strict),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], swiftSettings: strict),
        .testTarget(
            name: "AcceleratorsTests",
            dependencies: ["Accelerators", "Attestation", "Inference", "Kernels", "ModelFormat", "GGUFTestSupport", "ModelSigning",
                           "NodeCore", "TPM", "SoftwareTPM", "TPMTestSupport",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "X509", package: "swift-certificates"),
                           .product(name: "SwiftASN1", package: "swift-asn1")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "InferenceTests",
            dependencies: ["Inference", "Kernels", "ModelFormat", "GGUFTestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ModelSigningTests",
            dependencies: [
                "ModelSigning",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KeylimeAgentTests",
            dependencies: ["KeylimeAgent", "TPMTestSupport", "TPM", "Attestation", "ModelSigning",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "CryptoExtras", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // Pure verifier tests: profile rules, and captured swtpm evidence (Vectors/) appraised without a TPM.
        .testTarget(
            name: "AttestationTests",
            dependencies: ["Attestation", "ModelSigning", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Vectors"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TPMTests",
            dependencies: ["TPMTestSupport", "TPM", "SoftwareTPM", "Attestation", "NodeCore", "NodeHTTP", "ModelSigning",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "X509", package: "swift-certificates"),
                           .product(name: "Hummingbird", package: "hummingbird")],
            swiftSettings: strict
        ),
    ]
)
