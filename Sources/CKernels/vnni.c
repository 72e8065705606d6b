// Multi-activation Q4_1 and Q8_0 matrix products with AVX512-VNNI (see include/sn_kernels.h,
// `sn_matmul_rows_vnni`), bit-identical to kernels.c's AVX2 `prompt_rows`.
//
// Why the results are the same: for every (row, activation) pair both compute, block after block,
// eight int32 lane sums (lane k: the products of elements 4k..4k+3), exact in both; then the same
// float operations in the same order: acc_k = fma(d_w * d_a, float(lane_k), acc_k), hsum8, plus
// (Q4_1) the block minimums' sum m_w * s_a. Only the integer instructions differ:
//  - Q4_1: vpdpbusd (u8 x i8, four products into each i32 lane) replaces vpmaddubsw + vpmaddwd.
//    The quants are 0..15, so vpmaddubsw's 16-bit pair sums never saturated either.
//  - Q8_0: the weights' quants q_w are offset to u8 (q_w + 128, one xor) and the offset's share,
//    128 * sum q_a per lane, is subtracted by starting the lane at its negation (one vpdpbusd per
//    activation and block, shared by the rows of a tile). The AVX2 kernel's |q_w| * sign(q_a, q_w)
//    gives the same sums whenever q_a != -128, which Kernels' quantizer never produces
//    (q = nearest(x * 127 / max|x|)).
// Tiles are 2 rows (Q4_1: a packed pair, one load for both rows' quants) by up to 8 activations,
// or 4 rows (Q8_0: the offset sums shared by four rows) by up to 4; AVX-512VL's 32 vector
// registers hold the 16 accumulators. A tile first writes d_w * d_a of every (block, row,
// activation) to a small table, so that each FMA takes its scale as an embedded broadcast (a load);
// left to the compiler, the scales were broadcast by register shuffles that competed with vpdpbusd
// and the FMAs for the vector pipes: 1.15-1.2x slower for Q4_1, 1.12x for Q8_0 (bench/kernels/run.sh; `v_scale_table`).
#include "sn_kernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define V_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define V_INLINE static inline __attribute__((always_inline)) V_TARGET

/// -1: not decided yet; 0: AVX2 kernels; 1: AVX512-VNNI kernels.
static int vnni_state = -1;
/// `sn_set_isa_for_testing`'s choice: 1 lets the CPU decide, 0 forces AVX2.
static int allow_vnni = 1;

static int cpu_has_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

int sn_use_vnni(void) {
    int state = __atomic_load_n(&vnni_state, __ATOMIC_RELAXED);
    if (state < 0) {
        // SECURENODE_KERNEL_ISA=avx2: the AVX2 kernels, for A/B benchmarks of one binary.
        const char *isa = getenv("SECURENODE_KERNEL_ISA");
        state = cpu_has_vnni() && !(isa && strcmp(isa, "avx2") == 0);
        __atomic_store_n(&vnni_state, state, __ATOMIC_RELAXED);
    }
    return state && __atomic_load_n(&allow_vnni, __ATOMIC_RELAXED);
}

void sn_set_isa_for_testing(int isa) {
    __atomic_store_n(&allow_vnni, isa != SN_ISA_AVX2, __ATOMIC_RELAXED);
}

int sn_kernels_isa(void) {
    return sn_use_vnni() ? SN_ISA_AVX512_VNNI : SN_ISA_AVX2;
}

int sn_machine_isa(void) {
    int state = __atomic_load_n(&vnni_state, __ATOMIC_RELAXED);
    if (state < 0) {
        (void)sn_use_vnni();
        state = __atomic_load_n(&vnni_state, __ATOMIC_RELAXED);
    }
    return state ? SN_ISA_AVX512_VNNI : SN_ISA_AVX2;
}

/// Block b of a Q4_1 row: its 32 quants (0..15), element i in byte i.
V_INLINE __m256i v_q4_quants(sn_row row, int b) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const uint8_t *p = row.q + (size_t)b * row.stride;
    if (row.shift < 0) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)p);
        return _mm256_and_si256(
            _mm256_insertf128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1), low);
    }
    return _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)p), _mm_cvtsi32_si128(row.shift)), low);
}

/// d_w * d_a for blocks [b0, b1) of R rows against a chunk's eight activations (`da8`), block b's
/// row r at `dt + ((b - b0) * stride + r) * 8`: the tiles' scale tables, made before their block
/// loops so that each FMA takes its scale as an embedded broadcast (a load). Made inside the loop,
/// the compiler kept them in registers and broadcast each with shuffles, which compete with
/// vpdpbusd and the FMAs for the vector pipes (Q4_1 1.2x, Q8_0 1.12x slower). The product of two
/// F16 values is exact in F32, wherever computed.
V_INLINE void v_scale_table(int R, int stride, const sn_row *rows, int b0, int b1, const float *da8, float *dt) {
    for (int b = b0; b < b1; b++) {
        const __m256 da = _mm256_loadu_ps(da8 + 8 * b);
        for (int r = 0; r < R; r++)
            _mm256_store_ps(dt + (size_t)((b - b0) * stride + r) * 8, _mm256_mul_ps(_mm256_broadcast_ss(rows[r].sc + 8 * b), da));
    }
}

/// R rows (`pair`: rows[0] and rows[1] are a packed pair, shifts 0 and 4) by T <= 8 activations of
/// Q4_1 x Q8_1. `da8`, `sa8`: per block, the chunk's eight activations' `d` and `s` as floats
/// (zero past its activations); this tile's activations start at chunk activation `t0`.
V_INLINE void tile_q4_1_vnni(int R, int T, int pair, const sn_row *rows, int blocks, const float *da8,
                             const float *sa8, int t0, const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    enum { SLICE = 64 };
    __m256 acc[2][8];
    __m256 summs[2];
    float dt[SLICE * 2 * 8] __attribute__((aligned(64)));  // v_scale_table
    for (int r = 0; r < R; r++) {
        summs[r] = _mm256_setzero_ps();
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (int b0 = 0; b0 < blocks; b0 += SLICE) {
        const int b1 = blocks - b0 < SLICE ? blocks : b0 + SLICE;
        v_scale_table(R, 2, rows, b0, b1, da8, dt);
        for (int b = b0; b < b1; b++) {
            __m256i qx[2];
            if (pair) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(rows[0].q + (size_t)b * rows[0].stride));
                qx[0] = _mm256_and_si256(v, low);
                qx[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            } else {
                for (int r = 0; r < R; r++) qx[r] = v_q4_quants(rows[r], b);
            }
            const __m256 sa = _mm256_loadu_ps(sa8 + 8 * b);
            for (int r = 0; r < R; r++)
                // Products of two F16 values are exact: the FMA is the AVX2 kernel's multiply-then-add.
                summs[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(rows[r].sc + 8 * b + 1), sa, summs[r]);
            const uint8_t *ab = a + (size_t)b * 36 + 4;
            const float *db = dt + (size_t)(b - b0) * 16 + t0;
            for (int t = 0; t < T; t++) {
                const __m256i qy = _mm256_loadu_si256((const __m256i *)(ab + (size_t)t * a_stride));
                for (int r = 0; r < R; r++) {
                    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qx[r], qy);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_broadcast_ss(db + r * 8 + t), _mm256_cvtepi32_ps(dot), acc[r][t]);
                }
            }
        }
    }
    if (T == 8 && t0 == 0) {
        sn_store_tile_sums(R, acc, summs, out, out_stride);
        return;
    }
    for (int r = 0; r < R; r++) {
        float s[8];
        _mm256_storeu_ps(s, summs[r]);
        for (int t = 0; t < T; t++) out[(size_t)t * out_stride + r] = sn_hsum8(acc[r][t]) + s[t0 + t];
    }
}

/// R rows by T activations (R * T <= 16) of Q8_0 x Q8_0 (see `tile_q4_1_vnni`).
V_INLINE void tile_q8_0_vnni(int R, int T, const sn_row *rows, int blocks, const float *da8, int t0,
                             const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    enum { SLICE = 64 };
    __m256 acc[4][8];
    float dt[SLICE * 4 * 8] __attribute__((aligned(64)));  // v_scale_table
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    const __m256i offset = _mm256_set1_epi8((char)0x80);
    for (int b0 = 0; b0 < blocks; b0 += SLICE) {
        const int b1 = blocks - b0 < SLICE ? blocks : b0 + SLICE;
        v_scale_table(R, 4, rows, b0, b1, da8, dt);
        for (int b = b0; b < b1; b++) {
            __m256i ux[4];
            for (int r = 0; r < R; r++)
                ux[r] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(rows[r].q + (size_t)b * rows[r].stride)), offset);
            const uint8_t *ab = a + (size_t)b * 34 + 2;
            const float *db = dt + (size_t)(b - b0) * 32 + t0;
            for (int t = 0; t < T; t++) {
                const __m256i qy = _mm256_loadu_si256((const __m256i *)(ab + (size_t)(t0 + t) * a_stride));
                // -128 * (sum of each lane's four q_a): the offset's share of (q_w + 128) * q_a.
                const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(),
                                                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, qy));
                for (int r = 0; r < R; r++) {
                    const __m256i dot = _mm256_dpbusd_epi32(start, ux[r], qy);
                    acc[r][t] = _mm256_fmadd_ps(_mm256_broadcast_ss(db + r * 8 + t), _mm256_cvtepi32_ps(dot), acc[r][t]);
                }
            }
        }
    }
    if (R == 4 && T % 2 == 0) {
        // Two activations' four rows at a time: [rows 0-3 of activation t | of activation t + 1].
        for (int t = 0; t < T; t += 2) {
            const __m256 x[8] = {acc[0][t], acc[1][t], acc[2][t], acc[3][t],
                                 acc[0][t + 1], acc[1][t + 1], acc[2][t + 1], acc[3][t + 1]};
            const __m256 sum = sn_hsum8x8(x);
            _mm_storeu_ps(out + (size_t)t * out_stride, _mm256_castps256_ps128(sum));
            _mm_storeu_ps(out + (size_t)(t + 1) * out_stride, _mm256_extractf128_ps(sum, 1));
        }
        return;
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[(size_t)t * out_stride + r] = sn_hsum8(acc[r][t]);
}

// `sn_group_q4_1_vnni`: `SN_GROUP_Q4_1` (sn_internal.h) with vpdpbusd, and each row's d_w * d_a
// taken as an embedded broadcast from memory instead of a lane permute: the same lane sums, FMAs
// and order as kernels.c's `group_q4_1`, so the same bits.
V_INLINE __m256 v_sum_u8_i8(__m256i u, __m256i y) {
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y));
}
#define V_SCALE_BROADCAST(dd, mem, k) _mm256_broadcast_ss((mem) + (k))
SN_GROUP_Q4_1(sn_group_q4_1_vnni, V_TARGET, v_sum_u8_i8, V_SCALE_BROADCAST)

/// `group_q8_0` (kernels.c) with vpdpbusd: the weights offset to u8 and the offset's share taken
/// out exactly, as in `tile_q8_0_vnni`; the same lane sums, FMAs and order.
V_TARGET void sn_group_q8_0_vnni(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out) {
    __m256 acc[4];
    for (int j = 0; j < 4; j++) acc[j] = _mm256_setzero_ps();
    const __m256i offset = _mm256_set1_epi8((char)0x80);
    float dd[4] __attribute__((aligned(16)));
    for (int b = 0; b < blocks; b++) {
        const uint8_t *gb = g + (size_t)b * 136;
        for (int k = 0; k < 3; k++) _mm_prefetch((const char *)gb + 2048 + 64 * k, _MM_HINT_T0);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)(a + (size_t)b * 34 + 2));
        _mm_store_ps(dd, _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)gb)), _mm_broadcast_ss(das + b)));
        const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, qy));
        for (int j = 0; j < 4; j++) {
            const __m256i ux = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(gb + 8 + 32 * j)), offset);
            acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(dd + j), _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(start, ux, qy)), acc[j]);
        }
    }
    _mm_storeu_ps(out, sn_hsum8x4(acc[0], acc[1], acc[2], acc[3]));
}

// The tiles with constant shapes, so that their loops unroll into registers.
#define V_Q4_CASES(R, PAIR)                                                                     \
    switch (T) {                                                                                \
    case 8: tile_q4_1_vnni(R, 8, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    case 7: tile_q4_1_vnni(R, 7, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    case 6: tile_q4_1_vnni(R, 6, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    case 5: tile_q4_1_vnni(R, 5, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    case 4: tile_q4_1_vnni(R, 4, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    case 3: tile_q4_1_vnni(R, 3, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    case 2: tile_q4_1_vnni(R, 2, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;             \
    default: tile_q4_1_vnni(R, 1, PAIR, rw, nb, da8, sa8, 0, at, as, ot, os); break;            \
    }

#define V_Q8_CASES(R, TT, T0)                                                                   \
    switch (TT) {                                                                               \
    case 4: tile_q8_0_vnni(R, 4, rw, nb, da8, T0, at, as, ot + (size_t)(T0) * os, os); break;   \
    case 3: tile_q8_0_vnni(R, 3, rw, nb, da8, T0, at, as, ot + (size_t)(T0) * os, os); break;   \
    case 2: tile_q8_0_vnni(R, 2, rw, nb, da8, T0, at, as, ot + (size_t)(T0) * os, os); break;   \
    default: tile_q8_0_vnni(R, 1, rw, nb, da8, T0, at, as, ot + (size_t)(T0) * os, os); break;  \
    }

/// Chunk ci's tables for `sn_matmul_rows_vnni_tables`: per block b, the chunk's eight activations'
/// d (zero past the last activation) at `tables + 2 * ci * 8 * nb + 8 * b`, then their s (Q4_1;
/// zero for Q8_0) at `tables + (2 * ci + 1) * 8 * nb + 8 * b`.
V_INLINE void activation_tables(const uint8_t *a, size_t a_stride, int tokens, int nb, int q4, int c0, int chunks,
                                float *tables) {
    const size_t block_bytes = q4 ? 36 : 34;
    for (int ci = 0; ci < chunks; ci++) {
        const int c = c0 + 8 * ci;
        const int T = tokens - c < 8 ? tokens - c : 8;
        float *da = tables + (size_t)(2 * ci) * 8 * nb, *sa = da + 8 * nb;
        for (int t = 0; t < 8; t++) {
            const uint8_t *at = a + (size_t)(c + t) * a_stride;
            for (int b = 0; b < nb; b++) {
                da[8 * b + t] = t < T ? sn_half(at + (size_t)b * block_bytes) : 0;
                sa[8 * b + t] = t < T && q4 ? sn_half(at + (size_t)b * block_bytes + 2) : 0;
            }
        }
    }
}

V_TARGET void sn_vnni_activation_tables(int type, const uint8_t *a, size_t a_stride, int tokens, int blocks, float *tables) {
    activation_tables(a, a_stride, tokens, blocks, type == SN_Q4_1, 0, (tokens + 7) / 8, tables);
}

V_TARGET void sn_matmul_rows_vnni(const sn_matmul_job *job, int first, int last,
                                  const uint8_t *a, size_t a_stride, int tokens) {
    sn_matmul_rows_vnni_tables(job, first, last, a, a_stride, tokens, NULL);
}

V_TARGET void sn_matmul_rows_vnni_tables(const sn_matmul_job *job, int first, int last,
                                         const uint8_t *a, size_t a_stride, int tokens, const float *given) {
    const size_t as = a_stride, os = job->out_stride;
    const int nb = job->blocks;
    const int q4 = job->type == SN_Q4_1;
    float tab[8 * SN_MAX_BLOCKS] __attribute__((aligned(32)));
    // Up to eight chunks of eight activations per pass over the row groups (fewer for long rows, so
    // that the tables stay within 32 KB, or one chunk's): each group's scales are converted, and
    // its weights brought to L1, once for all of them (Q4_1: 1.03-1.05x on SmolLM2's 64-token
    // batches, bench/kernels/run.sh; the Q8_0 output matrix at 16 activations: 1.02x, within the
    // noise). With `given` tables (all the chunks', made once per pool call by `sn_pool_matmul`),
    // one pass.
    const int per = given ? (tokens + 7) / 8 : nb <= 64 ? 8 : (512 / nb > 1 ? 512 / nb : 1);
    float own[given ? 1 : 2 * per * 8 * nb];
    sn_row rows[4];
    for (int c0 = 0; c0 < tokens; c0 += 8 * per) {
        const int chunks = (tokens - c0 + 7) / 8 < per ? (tokens - c0 + 7) / 8 : per;
        const float *tables = given;
        if (!given) {
            activation_tables(a, a_stride, tokens, nb, q4, c0, chunks, own);
            tables = own;
        }
        for (int g = first / 4 * 4; g < last; g += 4) {
            sn_group_scales(job, g, tab, rows);
            const int begin = first > g ? first : g;
            const int end = last < g + 4 ? last : g + 4;
            for (int ci = 0; ci < chunks; ci++) {
                const int c = c0 + 8 * ci;
                const int T = tokens - c < 8 ? tokens - c : 8;
                const float *da8 = tables + (size_t)(2 * ci) * 8 * nb, *sa8 = da8 + 8 * nb;
                const uint8_t *at = a + (size_t)c * a_stride;
                float *ot = job->out + (size_t)c * os;
                if (q4) {
                    for (int r = begin; r < end;) {
                        const sn_row *rw = rows + (r - g);
                        float *o = ot + r;
                        if (r + 2 <= end && rw[0].shift == 0 && rw[1].shift == 4) {
                            { float *ot = o; V_Q4_CASES(2, 1) }
                            r += 2;
                        } else {
                            { float *ot = o; V_Q4_CASES(1, 0) }
                            r += 1;
                        }
                    }
                } else if (begin == g && end == g + 4) {
                    const sn_row *rw = rows;
                    float *o = ot + g;
                    { float *ot = o; V_Q8_CASES(4, T < 4 ? T : 4, 0) }
                    if (T > 4) { float *ot = o; V_Q8_CASES(4, T - 4, 4) }
                } else {
                    for (int r = begin; r < end; r++) {
                        const sn_row *rw = rows + (r - g);
                        float *o = ot + r;
                        { float *ot = o; V_Q8_CASES(1, T < 4 ? T : 4, 0) }
                        if (T > 4) { float *ot = o; V_Q8_CASES(1, T - 4, 4) }
                    }
                }
            }
        }
    }
}

#else  // not x86-64

int sn_use_vnni(void) { return 0; }
void sn_set_isa_for_testing(int isa) { (void)isa; }
int sn_kernels_isa(void) { return 0; }
int sn_machine_isa(void) { return 0; }
void sn_matmul_rows_vnni(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens) {
    (void)job; (void)first; (void)last; (void)a; (void)a_stride; (void)tokens;
}
void sn_matmul_rows_vnni_tables(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride,
                                int tokens, const float *tables) {
    (void)job; (void)first; (void)last; (void)a; (void)a_stride; (void)tokens; (void)tables;
}
void sn_vnni_activation_tables(int type, const uint8_t *a, size_t a_stride, int tokens, int blocks, float *tables) {
    (void)type; (void)a; (void)a_stride; (void)tokens; (void)blocks; (void)tables;
}

#endif
