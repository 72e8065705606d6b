import Foundation
import Testing
@testable import Kernels

/// The emulations of ggml's vector math: close to the exact functions (their documented error),
/// and the reduction orders are the documented trees.
@Suite struct GGMLMathTests {
    @Test(arguments: SIMDProfile.allCases)
    func expfIsWithinTwoUlps(profile: SIMDProfile) {
        var x: Float = -87
        while x < 88 {
            let exact = Float(Foundation.exp(Double(x)))
            let ours = profile.expf(x)
            #expect(abs(ours - exact) <= 2 * exact.ulp, "expf(\(x)) = \(ours), exact \(exact)")
            x += 0.37
        }
        #expect(profile.expf(0) == 1)
        #expect(profile.expf(-.infinity) == 0)
        #expect(profile.expf(-200) == 0)
    }

    @Test func reductionTrees() {
        // Values chosen so that the order shows: 1e8 absorbs 1 unless 1s are added together first.
        let v: [Float] = [1e8, 1, 1, 1, -1e8, 1, 1, 1]
        // hsum8: ((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7)) = (0 + 2) + (2 + 2) = 6.
        #expect(GGMLMath.hsum8(SIMD8<Float>(v)) == 6)
        var w = [Float](repeating: 0, count: 16)
        w[0] = 1e8; w[8] = -1e8; w[1] = 1; w[9] = 1
        // a_i = x_{i+8} + x_i: a0 = 0, a1 = 2; then t, then (t0 + t2) + (t1 + t3) = 2.
        #expect(GGMLMath.reduce16(w) == 2)
    }

    @Test func fusedMultiplyAddRoundsOnce() {
        // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: a separate multiply loses 2^-24 (a tie to even), FMA keeps it.
        let a: Float = 1 + 0x1p-12
        #expect(GGMLMath.fma(a, a, -1) == 0x1p-11 + 0x1p-24)
        #expect(a * a - 1 == 0x1p-11)
    }
}
