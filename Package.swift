// swift-tools-version: 6.0
import PackageDescription

// Settings every target shares (see ../shared/design/STYLE.md).
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Numeric targets (Kernels, Inference: the kernels and the forward pass, nothing that reads request
// text) are optimized even in debug builds, so that `swift test` can run the real model, and without
// runtime checks (-Ounchecked); on x86-64 they are compiled for AVX2/FMA/F16C CPUs (Haswell, 2013, and
// later).
#if arch(x86_64)
let numeric: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"])]
#else
let numeric: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]
#endif

// Code that handles request text or chooses tokens (Generation: tokenizer, chat template, sampler,
// stop strings) is optimized in debug builds too, so the tests stay fast, but keeps every runtime
// check (bounds, overflow): never -Ounchecked.
let safeOptimized: [SwiftSetting] = [.unsafeFlags(["-O"])]

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
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
    ],
    targets: [
        // GGUF reader: validates every field of untrusted model files before it allocates or slices.
        .target(name: "ModelFormat", swiftSettings: strict),
        // Anonymous memory for what every token reads whole (verified model bytes, the KV cache): on
        // huge pages where the kernel allows, unmapped when released.
        .target(name: "SystemMemory", swiftSettings: strict),
        // OpenSSF model-signing bundles (sigstore bundle v0.3 + DSSE + in-toto), key and X.509 methods.
        .target(
            name: "ModelSigning",
            dependencies: [
                "SystemMemory",
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
        // dot products, activation quantizers, vector ops, matrix products, the OpenBLAS wrapper. Optimized even in debug builds
        // so that the test suite can run the real model.
        .target(name: "Kernels", dependencies: ["CKernels", "COpenBLAS"], swiftSettings: strict + numeric),
        // OpenBLAS (libopenblas-dev, pkg-config openblas): cblas_sgemm for prompt batches above a
        // measured threshold (`PrefillMode`), and its thread and kernel-family controls. Only Kernels
        // imports it (`BLAS`).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // The innermost kernels in C with AVX2/FMA/F16C intrinsics (quantized matrix products, attention,
        // SwiGLU, activation quantization) and the thread pool; each bit-identical to its Swift reference
        // in Kernels, which the tests compare it with. Optimized in debug builds too.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        // prctl(PR_SET_DUMPABLE, 0) for `serve` (prctl is variadic: Swift cannot call it).
        .target(name: "CProcess"),
        // Everything that touches request text or sampling: the BPE tokenizer and pre-tokenizers, chat
        // templates, the sampler, UTF-8-safe streaming, stop strings and the per-sequence generation
        // state; InferenceError. Safe optimization (-O), never -Ounchecked.
        .target(
            name: "Generation",
            dependencies: ["ModelFormat"],
            swiftSettings: strict + safeOptimized
        ),
        // Llama-family transformer on the CPU: config, weights, KV cache, engine and ComputeBackend, the
        // forward pass and the generation loop (`Generator`) that drives a `GenerationState`.
        .target(
            name: "Inference",
            dependencies: ["Generation", "Kernels", "ModelFormat", "SystemMemory"],
            swiftSettings: strict + numeric
        ),
        // The node's composition of TPM, attestation and signed models: measure, event log, evidence.
        .target(
            name: "NodeCore",
            dependencies: ["TPM", "Attestation", "ModelSigning", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "CryptoExtras", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // What every listener of the node shares against hostile clients: a connection cap that displaces
        // connections without a request, request-head/body/TLS-handshake deadlines, oversized bodies
        // refused (413) and closed, the server TLS configuration, the file-descriptor limit.
        .target(
            name: "ServerHardening",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: strict
        ),
        // HTTP endpoints (Hummingbird 2): attestation, enrollment, health; the client side's connection to a
        // node (NIO HTTP/1.1 over TLS pinned to the key the node's evidence binds).
        .target(
            name: "NodeHTTP",
            dependencies: ["NodeCore", "Attestation", "TPM", "ModelSigning", .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOTLS", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "X509", package: "swift-certificates")],
            swiftSettings: strict
        ),
        // The service: configuration file, OpenAI-compatible API, continuous-batching scheduler,
        // API keys, limits, Prometheus metrics, receipts.
        .target(
            name: "NodeService",
            dependencies: [
                "NodeHTTP", "NodeCore", "Attestation", "Generation", "Inference", "ModelSigning", "ServerHardening",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The client side of an attested channel (`securenode proxy`): attests the node over each connection,
        // pins its TLS key to the evidence, verifies every receipt, serves an OpenAI-compatible endpoint on loopback.
        .target(
            name: "AttestedProxy",
            dependencies: [
                "NodeHTTP", "NodeService", "Attestation", "ModelSigning", "ServerHardening",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
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
                "TPM", "ModelSigning", "ServerHardening",
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
                "ModelFormat", "ModelSigning", "Attestation", "NodeCore", "NodeHTTP", "NodeService", "TPM", "SoftwareTPM", "ServerHardening", "CProcess", "AttestedProxy",
                .product(name: "Hummingbird", package: "hummingbird"), "Generation", "Inference", "Kernels", "Accelerators", "KeylimeAgent",
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Test-only: a provisioned swtpm per test (copied from one template), tpm2-tools helpers.
        .target(name: "TPMTestSupport", dependencies: ["TPM", "SoftwareTPM"], path: "Tests/Support/TPMTestSupport", swiftSettings: strict),
        // Test-only: writes GGUF files (valid, or broken on purpose) for the ModelFormat, Generation and Inference tests.
        .target(name: "GGUFTestSupport", dependencies: ["ModelFormat"], path: "Tests/Support/GGUFTestSupport", swiftSettings: strict),
        // Test-only: the walk of the field mutation tests (every path of a JSON document, one value replaced).
        .target(name: "JSONMutationSupport", path: "Tests/Support/JSONMutationSupport", swiftSettings: strict),
        .testTarget(name: "ModelFormatTests", dependencies: ["ModelFormat", "GGUFTestSupport"], swiftSettings: strict),
        .testTarget(name: "NodeServiceTests",
                    dependencies: ["NodeService", "NodeHTTP", "Attestation", "Generation", "Inference", "ModelFormat", "ModelSigning", "ServerHardening",
                                   "JSONMutationSupport",
                                   .product(name: "Crypto", package: "swift-crypto"),
                                   .product(name: "Hummingbird", package: "hummingbird"),
                                   .product(name: "HummingbirdTesting", package: "hummingbird"),
                                   .product(name: "NIOCore", package: "swift-nio"),
                                   .product(name: "NIOPosix", package: "swift-nio")],
                    swiftSettings: strict),
        .testTarget(
            name: "ServerHardeningTests",
            dependencies: ["ServerHardening",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOEmbedded", package: "swift-nio"),
                           .product(name: "NIOTLS", package: "swift-nio"),
                           .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                           .product(name: "HTTPTypes", package: "swift-http-types")],
            swiftSettings: strict
        ),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], exclude: ["Fixtures"], swiftSettings: strict),
        .testTarget(
            name: "AcceleratorsTests",
            dependencies: ["Accelerators", "Attestation", "Inference", "Kernels", "ModelFormat", "GGUFTestSupport", "ModelSigning",
                           "NodeCore", "TPM", "SoftwareTPM", "TPMTestSupport",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "X509", package: "swift-certificates"),
                           .product(name: "SwiftASN1", package: "swift-asn1")],
            swiftSettings: strict
        ),
        // Tokenizer (against llama.cpp's ids; Tests/InferenceTests/Fixtures), chat templates, sampler,
        // stop strings and streaming: no forward pass.
        .testTarget(
            name: "GenerationTests",
            dependencies: ["Generation", "ModelFormat", "GGUFTestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        // The model, the forward pass and the generation loop on the real model (against llama.cpp).
        .testTarget(
            name: "InferenceTests",
            dependencies: ["Generation", "Inference", "Kernels", "ModelFormat", "GGUFTestSupport"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ModelSigningTests",
            dependencies: [
                "ModelSigning",
                "SystemMemory",
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
            dependencies: ["Attestation", "ModelSigning", "JSONMutationSupport", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Vectors"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TPMTests",
            dependencies: ["TPMTestSupport", "TPM", "SoftwareTPM", "Attestation", "NodeCore", "NodeHTTP", "ModelSigning", "AttestedProxy",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "CryptoExtras", package: "swift-crypto"),
                           .product(name: "X509", package: "swift-certificates"),
                           .product(name: "SwiftASN1", package: "swift-asn1"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HummingbirdTLS", package: "hummingbird"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl")],
            swiftSettings: strict
        ),
    ]
)
