/// The modeled targets. Every number is a ``Quantity`` that names its basis and sources; the same
/// specs, sources included, are copied into each profile's `backend.model` (checked by
/// `securenode profile check`) and listed by `securenode backends --json`.
///
/// Conventions: rates are per second; bandwidths are bytes per second in one direction; "GB" of
/// DRAM capacity is taken as GiB (2^30 bytes), as DRAM is sized in powers of two; a peak rate is
/// cores x clock x (operations per cycle per core), where an FMA counts as 2 operations and an
/// 8-bit dot product instruction (SDOT: 4 products summed into each 32-bit lane) as 2 per product.
public enum DeviceCatalog {
    public static let all: [DeviceSpec] = [blueField3, blueField4, vera]

    public static func spec(kind: String) -> DeviceSpec? { all.first { $0.kind == kind } }

    // MARK: sources

    enum S {
        static let docaArchitecture = Source("https://docs.nvidia.com/doca/sdk/Hardware+Architecture",
            says: "BlueField Arm cores: \"16 Arm Cortex-A78 cores for general-purpose processing\", \"DDR5 memory subsystem for high-speed data access\"")
        static let bf3Interfaces = Source("https://docs.nvidia.com/networking/display/bf3dpu/supported+interfaces",
            says: "B3220L/B3210L FHHL DPUs: \"20 units of DDR5 SDRAM for a total of 32GB @5200 or 5600MT/s. 128bit + 16bit ECC, solder-down memory\"; \"PCIe Gen 5.0/4.0 through an x16 edge connector\"")
        static let bf3Controller = Source("https://docs.nvidia.com/networking/display/BF3DPUController/Introduction",
            says: "\"PCIe Gen 5.0 (32GT/s) through x16 edge connector\"")
        static let bf3ClockYobitel = Source("https://yobitel.com/knowledge-base/bluefield-3-dpu",
            says: "\"16 ARM Cortex-A78 cores at 2.0 GHz, up to 32 GB DDR5\"")
        static let bf3ClockSurvey = Source("https://www.emergentmind.com/topics/nvidia-bluefield-3-bf3",
            says: "\"16 ARMv8.2+ Cortex-A78AE (\\\"Hercules\\\") cores at 2.0–2.5 GHz\" (summary of published papers)")
        static let a78Optimization = Source("https://documentation-service.arm.com/static/60a5413bd63d3c31550c391e",
            says: "Arm Cortex-A78 Core Software Optimization Guide, Table 3-24: \"FP multiply accumulate | FMADD, FMSUB, FNMADD, FNMSUB | Execution Latency 4 (2) | Throughput 2 | Pipeline V\" (two 128-bit V pipelines, V0 and V1)")
        static let pcieGen6 = Source("https://glennklockwood.com/garden/PCIe-Gen6",
            says: "\"PCIe 6.0 supports 64 GT/s or 128 GB/s per direction on an x16 connection\"; FLIT mode \"no longer uses 128/130 encoding\" (earlier generations did); each 256-byte flit carries \"236 bytes of payload (TLP)\", \"about 118 GB/s of usable bandwidth per direction\"")
        static let pcieBench = Source("https://www.repository.cam.ac.uk/items/f1ee17ce-cc1f-4dea-9322-10e8503c889e",
            says: "Neugebauer et al., \"Understanding PCIe performance for end host networking\" (SIGCOMM 2018): characterizes PCIe DMA latency and bandwidth on modern servers with pcie-bench (no number taken from it here)")
        static let armBarriers = Source("https://openreview.net/forum?id=IevGDgXbIJ",
            says: "\"Optimizing Barrier Synchronization on ARMv8 Many-Core Architectures\" (CLUSTER 2021): OpenMP barrier cost on ARMv8 many-cores varies widely with the algorithm (no number taken from it here)")
        static let bf4ITDaily = Source("https://itdaily.com/news/datacenter/nvidia-bluefield-4-dpu",
            says: "\"The Nvidia BlueField-4 combines an ARM-based Grace CPU with ConnectX-9 networking capabilities. The CPU has 64 Arm Neoverse V2 cores and the chip comes with 128 GB LPDDR5. Connection to the host is via the PCIe Gen6 interface.\"")
        static let bf4Briefing = Source("https://onmine.io/nvidia-looks-to-power-ai-factory-networks",
            says: "\"BlueField 4 received a replacement CPU: Nvidia's own Grace CPU, a 64-core design based on the Neoverse enterprise architecture\"; \"six times more compute\" than BlueField-3")
        static let bf4NotPublic = Source("https://ainews247.org/story/52199",
            says: "\"While full specs aren't yet public, the company signaled PCIe Gen6 capability\" (BlueField-4, announced at GTC DC, October 2025)")
        static let graceSuperchip = Source("https://hardwaretimes.com/nvidia-announces-grace-cpu-up-2x-faster-than-amd-epyc-and-intel-xeon-parts-with-better-power-efficiency/",
            says: "Grace CPU Superchip table: \"Neoverse V2 Cores: Armv9 with 4x128b SVE2\", \"Core count | 144\", \"FP64 peak | 7.1 TFLOPS\", \"Raw memory BW | Up to 1 TB/s\"")
        static let graceMemory = Source("https://uniexeterrse.github.io/gw4-isambard-3-practical-workshop-2026/section_01_welcome_login_overview/02-grace-cpu-superchip.html",
            says: "Grace peak memory bandwidth: \"Per Grace CPU | up to 512 GB/s\"; \"Each Neoverse V2 core contains four 128-bit SIMD units\"")
        static let veraSummary = Source("https://aiwiki.ai/wiki/nvidia_vera_cpu",
            says: "Vera table (citing NVIDIA): \"88 custom NVIDIA \\\"Olympus\\\" cores\", \"NVIDIA Spatial Multithreading, 176 threads\", \"LPDDR5X, up to 1.5 TB capacity\", \"Memory bandwidth | Up to 1.2 TB/s\", \"NVLink-C2C, up to 1.8 TB/s coherent\"")
        static let veraTechSpot = Source("https://www.techspot.com/news/111712-nvidia-unveils-vera-88-core-arm-cpu-ai.html",
            says: "\"The chip is built on 88 Nvidia-designed Arm v9.2-A \\\"Olympus\\\" cores, up from Grace's 72 Arm Neoverse cores\"")
        static let veraBandwidth = Source("https://shshell.com/blog/nvidia-vera-cpu-agentic-ai-infrastructure",
            says: "\"NVIDIA unveils the Vera CPU with 88 custom Olympus cores and 1.2 TB/s memory bandwidth\"")
        static let veraVectors = Source("https://www.thinkers360.com/tl/blog/members/the-architect-of-agency-nvidias-vera-cpu-and-the-dawn-of-the-ai-super-factory",
            says: "\"Each of the 88 Olympus cores features six 128-bit SVE2 vector engines, a 50% increase over Grace. More importantly, it is the first CPU to support FP8 precision natively.\"")
        static let veraISA = Source("https://github.com/ashvardanian/NumKong/issues/319",
            says: "\"NVIDIA Vera's Olympus cores are ARMv9.2-A with 6x 128-bit SVE2 engines per core. Key ISA extensions: FP8DOT2, FP8DOT4 ... No SME\"")
    }

    static let launchAssumption = Quantity(2e-6, "s", .assumed,
        reasoning: "Not public. A fork-join of the device's cores per operation (the same design as the CPU backend's thread pool); "
            + "barrier costs on Arm many-cores are microseconds and vary with the implementation; we assume 2 µs per operation.",
        sources: [S.armBarriers])

    /// Grace's clock as implied by its published FP64 peak (the Vera and BlueField-4 clocks are not public).
    static let graceDerivedClock = 7.1e12 / (144 * 16)

    // MARK: BlueField-3

    /// NVIDIA BlueField-3 DPU (B3220 class: 16 Arm Cortex-A78 cores, 32 GB DDR5), a PCIe Gen5 x16 device.
    public static let blueField3: DeviceSpec = {
        let cores = 16.0, clock = 2.0e9
        func peak(_ perCycle: Double, _ what: String) -> Quantity {
            Quantity(cores * clock * perCycle, "op/s", .derived,
                     reasoning: "16 cores x 2.0 GHz x \(Int(perCycle)) op/cycle (\(what)); assumes the 128-bit ASIMD forms issue at 2 per cycle "
                        + "(one per V pipeline), as the scalar FMADD does in the optimization guide",
                     sources: [S.docaArchitecture, S.a78Optimization])
        }
        return DeviceSpec(
            kind: "bluefield-3",
            name: "NVIDIA BlueField-3 DPU (16 Arm Cortex-A78, 32 GB DDR5, PCIe Gen5 x16)",
            status: "shipping (B3220/B3210 DPUs); NVIDIA does not publish the Arm clock",
            placement: .attached,
            cores: Quantity(cores, "cores", .published, sources: [S.docaArchitecture]),
            threads: nil,
            clock: Quantity(clock, "Hz", .assumed,
                reasoning: "NVIDIA's BlueField-3 pages found do not state the Arm clock; third-party pages give 2.0 GHz and 2.0-2.5 GHz; we take the lowest.",
                sources: [S.bf3ClockYobitel, S.bf3ClockSurvey]),
            vectorUnits: "2 x 128-bit ASIMD (NEON) pipelines per core: fp32 4 lanes, fp16 8 lanes (Armv8.2 FP16), SDOT 16 int8 products",
            peak: [
                DataType.fp32.rawValue: peak(16, "2 pipes x 4 fp32 lanes x 2 for FMA"),
                DataType.fp16.rawValue: peak(32, "2 pipes x 8 fp16 lanes x 2 for FMA"),
                DataType.int8.rawValue: peak(64, "2 pipes x 16 int8 products (SDOT) x 2"),
            ],
            memoryBandwidth: Quantity(5600e6 * 16, "B/s", .derived,
                reasoning: "5600 MT/s x 128-bit (16-byte) data bus = 89.6 GB/s (the 5200 MT/s SKUs: 83.2 GB/s)",
                sources: [S.bf3Interfaces]),
            memoryCapacity: Quantity(32 * 1_073_741_824, "B", .published, reasoning: "32 GB taken as GiB", sources: [S.bf3Interfaces]),
            memoryType: "DDR5-5600, 128-bit + ECC",
            hostLink: .init(
                name: "PCIe Gen5 x16",
                bandwidth: Quantity(32e9 * 16 * 128 / 130 / 8, "B/s", .derived,
                    reasoning: "32 GT/s x 16 lanes x 128/130 (line code of PCIe 3.0-5.0) / 8 = 63.0 GB/s per direction, before packet overheads",
                    sources: [S.bf3Controller, S.bf3Interfaces, S.pcieGen6]),
                latency: Quantity(1e-6, "s", .assumed,
                    reasoning: "Not public for BlueField-3. One DMA transfer per operation (descriptor, doorbell, completion); small PCIe DMA round trips "
                        + "are hundreds of nanoseconds on servers and more with an IOMMU; we assume 1 µs per operation that transfers anything.",
                    sources: [S.pcieBench])),
            otherLinks: [:],
            launchOverhead: launchAssumption,
            firmware: "securenode-modeled-firmware/bluefield-3/1")
    }()

    // MARK: BlueField-4

    /// NVIDIA BlueField-4 (announced October 2025: a 64-core Grace CPU with ConnectX-9, 128 GB, PCIe Gen6).
    public static let blueField4: DeviceSpec = {
        let cores = 64.0, clock = graceDerivedClock
        func peak(_ perCycle: Double, _ what: String) -> Quantity {
            Quantity(cores * clock * perCycle, "op/s", .derived,
                     reasoning: "64 cores x 3.08 GHz (derived clock) x \(Int(perCycle)) op/cycle (\(what)): Neoverse V2 has 4 x 128-bit SVE2/NEON units",
                     sources: [S.bf4ITDaily, S.graceSuperchip, S.graceMemory])
        }
        return DeviceSpec(
            kind: "bluefield-4",
            name: "NVIDIA BlueField-4 (64-core Grace CPU, 128 GB LPDDR5, PCIe Gen6), as announced",
            status: "announced at GTC Washington DC (October 2025) for Vera Rubin platforms in 2026; no datasheet: core count, memory size and "
                + "host interface are reported by the press, the rest is derived from Grace or assumed. (Coverage names ConnectX-9, not ConnectX-8.)",
            placement: .attached,
            cores: Quantity(cores, "cores", .reported, sources: [S.bf4ITDaily, S.bf4Briefing]),
            threads: nil,
            clock: Quantity(clock, "Hz", .derived,
                reasoning: "Not public for BlueField-4; NVIDIA says it integrates a Grace CPU, so we use Grace's clock as implied by Grace's published peak: "
                    + "7.1 TFLOP/s FP64 / (144 cores x 4 pipes x 2 FP64 lanes x 2 for FMA) = 3.08 GHz",
                sources: [S.bf4Briefing, S.graceSuperchip]),
            vectorUnits: "4 x 128-bit SVE2/NEON pipelines per core (Neoverse V2): fp32 4 lanes, fp16/bf16 8 lanes, SDOT 16 int8 products",
            peak: [
                DataType.fp32.rawValue: peak(32, "4 pipes x 4 fp32 lanes x 2 for FMA"),
                DataType.fp16.rawValue: peak(64, "4 pipes x 8 fp16 lanes x 2 for FMA"),
                DataType.int8.rawValue: peak(128, "4 pipes x 16 int8 products (SDOT) x 2"),
            ],
            memoryBandwidth: Quantity(512e9, "B/s", .assumed,
                reasoning: "Not public for BlueField-4. We assume one Grace CPU's LPDDR5X bandwidth (up to 512 GB/s, half the Superchip's 1 TB/s); "
                    + "with 128 GB of LPDDR5 it may well be lower.",
                sources: [S.graceMemory, S.graceSuperchip, S.bf4ITDaily]),
            memoryCapacity: Quantity(128 * 1_073_741_824, "B", .reported, reasoning: "128 GB taken as GiB", sources: [S.bf4ITDaily]),
            memoryType: "LPDDR5",
            hostLink: .init(
                name: "PCIe Gen6 x16 (lane count assumed)",
                bandwidth: Quantity(128e9 * 236 / 256, "B/s", .derived,
                    reasoning: "PCIe Gen6 reported; lane count not public, x16 assumed: 128 GB/s per direction x 236/256 FLIT payload = 118 GB/s",
                    sources: [S.bf4ITDaily, S.bf4NotPublic, S.pcieGen6]),
                latency: Quantity(1e-6, "s", .assumed,
                    reasoning: "Not public; the same 1 µs per transferring operation as for BlueField-3.",
                    sources: [S.pcieBench])),
            otherLinks: [:],
            launchOverhead: launchAssumption,
            firmware: "securenode-modeled-firmware/bluefield-4/1")
    }()

    // MARK: Vera

    /// NVIDIA Vera CPU (88 Olympus cores, LPDDR5X): the device is the host itself, so nothing crosses a link.
    public static let vera: DeviceSpec = {
        let cores = 88.0, clock = graceDerivedClock
        func peak(_ perCycle: Double, _ what: String) -> Quantity {
            Quantity(cores * clock * perCycle, "op/s", .derived,
                     reasoning: "88 cores x 3.08 GHz (assumed clock) x \(Int(perCycle)) op/cycle (\(what))",
                     sources: [S.veraSummary, S.veraVectors, S.veraISA])
        }
        return DeviceSpec(
            kind: "vera",
            name: "NVIDIA Vera CPU (88 Olympus cores, LPDDR5X, NVLink-C2C)",
            status: "announced (2026); numbers below are NVIDIA's as reported by the press; NVIDIA does not publish the clock",
            placement: .host,
            cores: Quantity(cores, "cores", .reported, sources: [S.veraSummary, S.veraTechSpot]),
            threads: Quantity(176, "threads", .reported, reasoning: "Spatial Multithreading: 2 per core; the peaks count cores, not threads",
                              sources: [S.veraSummary]),
            clock: Quantity(clock, "Hz", .assumed,
                reasoning: "Not public. We assume Grace's clock as implied by Grace's published peak: 7.1 TFLOP/s FP64 / (144 cores x 16 FP64 op/cycle) = 3.08 GHz.",
                sources: [S.graceSuperchip]),
            vectorUnits: "6 x 128-bit SVE2 engines per core: fp32 4 lanes, fp16/bf16 8 lanes, SDOT 16 int8 products, FP8DOT2 16 fp8 products",
            peak: [
                DataType.fp32.rawValue: peak(48, "6 engines x 4 fp32 lanes x 2 for FMA"),
                DataType.fp16.rawValue: peak(96, "6 engines x 8 fp16 lanes x 2 for FMA"),
                DataType.int8.rawValue: peak(192, "6 engines x 16 int8 products (SDOT) x 2"),
                DataType.fp8.rawValue: peak(192, "6 engines x 16 fp8 products (FP8DOT2) x 2"),
            ],
            memoryBandwidth: Quantity(1.2e12, "B/s", .reported, sources: [S.veraSummary, S.veraBandwidth]),
            memoryCapacity: Quantity(1.5 * 1_099_511_627_776, "B", .reported, reasoning: "1.5 TB taken as 1.5 TiB", sources: [S.veraSummary]),
            memoryType: "LPDDR5X (SOCAMM)",
            hostLink: nil,
            otherLinks: ["nvlinkC2C": Quantity(1.8e12, "B/s", .reported,
                reasoning: "Coherent link to a Rubin GPU; unused here: the model runs on Vera's own cores and memory", sources: [S.veraSummary])],
            launchOverhead: launchAssumption,
            firmware: "securenode-modeled-firmware/vera/1")
    }()
}
