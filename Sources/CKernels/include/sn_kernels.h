// SecureNode's innermost CPU kernels, in C with x86 AVX2/FMA/F16C intrinsics where measurement
// showed Swift could not reach the speed (Swift has no access to vpmaddubsw, vcvtph2ps, ...).
//
// Every kernel reproduces, bit for bit, the operation order of the Swift reference it replaces in
// the Kernels module (which in turn reproduces llama.cpp's x86 kernels); the Swift tests compare
// each kernel with its reference on random inputs. Nothing here allocates, reads past the sizes
// it is given, or keeps a pointer after it returns. The callers (Swift) validate shapes once, when
// a model is loaded.
//
// On a CPU without AVX2+FMA+F16C, `sn_kernels_available()` is 0 and the callers stay on the Swift
// reference paths: these functions must then not be called.
#ifndef SN_KERNELS_H
#define SN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the CPU has what the kernels are compiled for (AVX2, FMA, F16C), else 0.
int sn_kernels_available(void);

/// 1 when the CPU has the AVX-512 subsets OpenBLAS's SkylakeX kernels use (F, CD, BW, DQ, VL), else 0.
int sn_cpu_has_avx512(void);

// MARK: - Quantized matrix products

/// Weight formats of `sn_matmul_job`.
enum {
    SN_Q4_1 = 1, ///< block_q4_1 weights (20 bytes per 32), Q8_1 activations (36 bytes per 32)
    SN_Q8_0 = 2, ///< block_q8_0 weights (34 bytes per 32), Q8_0 activations (34 bytes per 32)
    // q32.c: kept as ggml rows (`sn_pack_rows` leaves them, `sn_unpack_row` copies the row).
    SN_Q4_0 = 3, ///< block_q4_0 weights (18 bytes per 32), Q8_0 activations
    SN_Q5_0 = 4, ///< block_q5_0 weights (22 bytes per 32), Q8_0 activations
    SN_Q5_1 = 5, ///< block_q5_1 weights (24 bytes per 32), Q8_1 activations
};

/// K-quant weight formats of `sn_matmul_job` (ggml's type ids), all with Q8_K activations (292
/// bytes per 256: `d: f32`, 256 quants, sixteen 16-bit sums); `blocks` still counts 32 columns.
/// Their matrices keep ggml's row layout (`sn_pack_rows` does not apply). See kquants.c.
enum { SN_Q2_K = 10, SN_Q3_K = 11, SN_Q4_K = 12, SN_Q5_K = 13, SN_Q6_K = 14 };

/// Most blocks per row `sn_matmul_rows` takes (32,768 columns): its scratch is on the stack.
#define SN_MAX_BLOCKS 1024

/// One matrix product: `out[t * out_stride + r] = dot(row r of w, activation t)` for `r < rows`
/// and every activation of the call. The weights are packed (`sn_pack_rows`); `row_bytes` is the
/// size of one ggml row (`blocks` blocks, at most `SN_MAX_BLOCKS`).
typedef struct {
    int type;
    const uint8_t *w;
    size_t row_bytes;
    int rows;
    int blocks;
    float *out;
    size_t out_stride;
} sn_matmul_job;

/// Rows `[first, last)` of `job` against `tokens` activations (`a_stride` bytes apart), in
/// ggml's AVX2 order for each (row, activation) pair: eight float lanes, lane k accumulating
/// fma(d_w * d_a, sum of the products of elements 4k..4k+3, acc_k) block after block, then
/// ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), plus (Q4_1) the block minimums' sum m_w * s_a added in
/// order. Several activations share each unpacked weight block (the prompt path); a single
/// activation runs four rows at a time (the decode path).
void sn_matmul_rows(const sn_matmul_job *job, int first, int last,
                    const uint8_t *a, size_t a_stride, int tokens);

/// Rearranges a matrix of ggml rows, in place and without changing its size, into the layout the
/// matrix products read: every group of four rows (`rows / 4` groups; rows after the last whole
/// group stay as they are) becomes, block by block, the four rows' F16 scales (Q4_1: `d, m` of
/// row 0, then of rows 1, 2, 3: 16 bytes; Q8_0: four `d`, 8 bytes) followed by their quants
/// (Q8_0: four times 32 bytes; Q4_1: rows 0 and 1 in the low and high nibbles of 32 bytes, one
/// element per byte, then rows 2 and 3 the same way). Q4_0 packs groups of eight rows (llama.cpp's
/// q4_0_8x8 layout): per block the eight rows' F16 scales (16 bytes), then four times 32 bytes,
/// the k-th holding bytes 4k..4k+3 of each row's 16 quant bytes, row after row. Q5_0, Q5_1 and
/// the K-quants stay ggml rows. `scratch` holds `8 * row_bytes` bytes.
void sn_pack_rows(int type, uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *scratch);
/// Row `r` of a packed matrix, as the ggml row it was (`row_bytes` bytes at `out`).
void sn_unpack_row(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, int r, uint8_t *out);

/// `sn_matmul_rows` for SN_Q4_1 and SN_Q8_0 with several activations, with AVX512-VNNI (vnni.c):
/// bit-identical to the AVX2 kernels for activations from `sn_quantize_q8_1`/`sn_quantize_q8_0`
/// (whose quants are never -128). `sn_matmul_rows` calls it when `sn_use_vnni()`.
void sn_matmul_rows_vnni(const sn_matmul_job *job, int first, int last,
                         const uint8_t *a, size_t a_stride, int tokens);
/// `sn_matmul_rows_vnni` with the activations' scale tables made beforehand by
/// `sn_vnni_activation_tables` (for all of `tokens`; NULL: made here), so that the members of a
/// pool call do not each convert them again for every chunk of rows they take.
void sn_matmul_rows_vnni_tables(const sn_matmul_job *job, int first, int last,
                                const uint8_t *a, size_t a_stride, int tokens, const float *tables);
/// Fills `tables` (2 * 8 * blocks floats per chunk of eight activations, (tokens + 7) / 8 chunks)
/// for `sn_matmul_rows_vnni_tables` with activations of `type`'s products (SN_Q4_1: Q8_1; SN_Q8_0: Q8_0).
void sn_vnni_activation_tables(int type, const uint8_t *a, size_t a_stride, int tokens, int blocks, float *tables);

/// Instruction sets of the matrix products (`sn_kernels_isa`, `sn_set_isa_for_testing`).
enum { SN_ISA_AVX2 = 1, SN_ISA_AVX512_VNNI = 2 };
/// 1 when `sn_matmul_rows` takes its VNNI kernels: the CPU has AVX-512 F/BW/VL/VNNI (and AVX2,
/// FMA, F16C), the environment variable SECURENODE_KERNEL_ISA was not `avx2` at the first call
/// (for A/B benchmarks of one binary), and `sn_set_isa_for_testing(SN_ISA_AVX2)` is not in force.
int sn_use_vnni(void);
/// The instruction set the matrix products use now: SN_ISA_AVX512_VNNI or SN_ISA_AVX2 (0 off x86).
int sn_kernels_isa(void);
/// The instruction set this machine's products take when no test forces one: what the CPU has and
/// SECURENODE_KERNEL_ISA allows, without `sn_set_isa_for_testing`. Decisions that change results
/// (which prompt products stay exact) use it, so a test forcing AVX2 cannot change them elsewhere.
int sn_machine_isa(void);
/// For tests and benchmarks, which compare the paths on one machine: SN_ISA_AVX2 keeps the matrix
/// products on their AVX2 kernels; SN_ISA_AVX512_VNNI (the default) lets the CPU decide. Takes
/// effect for the products that start after it returns (process-wide).
void sn_set_isa_for_testing(int isa);

/// `sn_matmul_rows` for SN_Q4_0, SN_Q5_0 and SN_Q5_1 (q32.c), bit-identical to Kernels' `Q4_0.dot`
/// (llama.cpp's repacked q4_0_8x8 order: per block `acc = fma(isum, d_w * d_a, acc)`), `Q5_0.dot`
/// and `Q5_1.dot` (ggml's AVX2 `vec_dot` order, as for Q4_1). Q4_0 takes a VNNI kernel when
/// `sn_use_vnni()` (eight rows per vector, any number of activations; the same bits).
void sn_matmul_rows_q32(const sn_matmul_job *job, int first, int last,
                        const uint8_t *a, size_t a_stride, int tokens);
/// `blocks` blocks of a SN_Q4_0, SN_Q5_0 or SN_Q5_1 row into `32 * blocks` floats, as Kernels'
/// `dequantize` of the type (ggml's `dequantize_row_*`).
void sn_dequantize_q32(int type, const uint8_t *row, int blocks, float *out);

/// `blocks` Q8_1 blocks from `32 * blocks` floats, as Kernels' `Q8_1.quantize` (ggml's x86
/// `quantize_row_q8_1`).
void sn_quantize_q8_1(const float *x, int blocks, uint8_t *out);
/// `blocks` Q8_0 blocks from `32 * blocks` floats, as Kernels' `Q8_0.quantize`.
void sn_quantize_q8_0(const float *x, int blocks, uint8_t *out);
/// `blocks` Q8_K blocks from `256 * blocks` floats, as Kernels' `Q8_K.quantize`.
void sn_quantize_q8_K(const float *x, int blocks, uint8_t *out);
/// `blocks` K-quant blocks of `type` into `256 * blocks` floats, as Kernels' reference dequantizers.
void sn_dequantize_kquant(int type, const uint8_t *x, int blocks, float *out);
/// `sn_matmul_rows` for the K-quant types (kquants.c).
void sn_kquant_rows(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens);
/// `sn_kquant_rows` for SN_Q4_K and SN_Q6_K with AVX512-VNNI (kquants.c; other types: `sn_kquant_rows`):
/// the same bits, register-blocked for prompt batches (4 rows x 4 activations per tile).
/// `sn_matmul_rows` calls it for SN_KQ_GEMM_MIN_TOKENS or more activations when `sn_use_vnni()`.
void sn_kquant_gemm_vnni(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens);
/// Q4_K and Q6_K prompt products in groups of sixteen rows (kquant_groups.c, AVX512-VNNI only:
/// callers check `sn_machine_isa()`): within a tolerance of `sn_kquant_rows`, not its bits. Bytes of
/// one group of `blocks` 256-element blocks of `type` (SN_Q4_K or SN_Q6_K; 0 for others).
size_t sn_kquant_group_bytes(int type, int blocks);
/// Rows `0 ..< rows` (at most 16; the rest of the group is zeros) of a `type` matrix whose rows are
/// `row_bytes` apart, `blocks` blocks each, repacked into `out` (`sn_kquant_group_bytes`).
void sn_kquant_repack_group(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *out);
/// Q4_K's side data of a Q8_K row (`blocks` blocks): each 32-element sub-block sum as a float.
void sn_q4k_activation_sums(const uint8_t *a, int blocks, float *sums);
/// Q6_K's form of a Q8_K row (`blocks` blocks, the same layout): every quant + 128, as unsigned bytes.
void sn_q6k_activations(const uint8_t *a, int blocks, uint8_t *out);
/// `out[t * out_stride + r] = dot(row r of the group, activation t)` for `r < rows`, `t < tokens`,
/// activations `a_stride` bytes apart: Q4_K, Q8_K rows with their `sn_q4k_activation_sums` (`sums`,
/// `sums_stride` floats apart); Q6_K, `sn_q6k_activations` rows (`sums` unused).
void sn_kquant_group_gemm(int type, const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                          const float *sums, size_t sums_stride, int tokens, float *out, size_t out_stride);
/// Q4_1 prompt rows in groups of sixteen rows (q4_1_groups.c, AVX512-VNNI only: callers check
/// `sn_machine_isa()`): within a tolerance of `sn_matmul_rows`, not its bits; each output the same
/// whatever the number of activations or the row's group. Bytes of one group of `blocks` blocks.
size_t sn_q4_1_group_bytes(int blocks);
/// Rows `first ..< first + count` (count at most 16; the rest of the group is zeros) of a Q4_1 matrix
/// of `rows` rows, `row_bytes` apart, `blocks` blocks each, repacked into `out`. `packed`: the matrix
/// is in the exact kernels' packed layout (`sn_pack_rows`), else ggml's.
void sn_q4_1_repack_group(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count, int blocks,
                          uint8_t *out);
/// A Q8_1 row's `blocks` scales as floats: `d`, `s` per block.
void sn_q4_1_activation_scales(const uint8_t *a, int blocks, float *ds);
/// Rows `first ..< first + count` of the Q4_1 matrix (as `sn_q4_1_repack_group` reads it) against
/// `tokens` activations without repacking, `out[t * out_stride + r - first]`: the same bits as repacking
/// and `sn_q4_1_group_gemm` (integer dots, exact in any order, then the same float operations in the
/// same order), faster for one or two activations, where a repacking is not paid back.
void sn_q4_1_rows_direct(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count, int blocks,
                         const uint8_t *a, size_t a_stride, const float *ds, size_t ds_stride, int tokens, float *out,
                         size_t out_stride);
/// `out[t * out_stride + r] = dot(row r of the group, activation t)` for `r < rows`, `t < tokens`: Q8_1
/// activations `a_stride` bytes apart with their `sn_q4_1_activation_scales` (`ds_stride` floats apart).
void sn_q4_1_group_gemm(const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                        const float *ds, size_t ds_stride, int tokens, float *out, size_t out_stride);
/// Fewest activations for which `sn_matmul_rows` takes `sn_kquant_gemm_vnni`: below 16 its per-block
/// unpacking is not paid back on every shape (bench/kernels/kquant_gemm.sh, bench/results/kquant-gemm.md).
#define SN_KQ_GEMM_MIN_TOKENS 16

// MARK: - Attention over an F16 cache

/// One query head over `positions` cached positions, exactly as Kernels' `Attention.head` with
/// the same arguments (`tiny` = `.tinyBLAS` order, else `.vecDotF16`; `width` = 8 for the AVX2
/// profile, 16 for AVX-512). `scratch` holds `sn_attention_scratch(positions, head_dim)` floats.
/// Positions before `first` are masked (a sliding window: zero weight, as ggml's -inf mask);
/// `softcap` > 0 caps every score as `tanh(kq / softcap) * softcap` before the scale (Gemma 2).
void sn_attention_head(const float *query, const uint16_t *keys, const uint16_t *values,
                       size_t stride, int positions, int first, int head_dim, float scale, float softcap,
                       int tiny, int width, float *scratch, float *out);
size_t sn_attention_scratch(int positions, int head_dim);

// MARK: - Vector operations

/// `gate[i] = silu(gate[i]) * up[i]` for `count` floats, as Kernels' `VectorOps.swiglu` with the
/// profile of `width` (8: AVX2, 16: AVX-512).
void sn_swiglu(float *gate, const float *up, int count, int width);

/// Floats to F16 bits, ties to even (F16C), and back.
void sn_f32_to_f16(const float *x, uint16_t *out, int count);
void sn_f16_to_f32(const uint16_t *x, float *out, int count);

/// One row of scores of GEMM attention (Kernels' `GEMMAttention`: the BLAS prompt path, not
/// bit-exact): `row[first ..< end]` becomes softmax(cap(x) * scale) (cap(x) = tanh(x / softcap) *
/// softcap when softcap > 0, else x), max-subtracted, ggml's AVX2 expf, F32 sum; every other float
/// of `row[0 ..< count]` becomes 0 (the causal and sliding-window mask). Needs first < end.
void sn_softmax_masked(float *row, int count, int first, int end, float scale, float softcap);

// MARK: - Thread pool

/// A fixed team of threads for data-parallel work. The caller's thread is member 0; the others
/// spin briefly after each job (so the next one starts without a wake-up) and then sleep on a
/// condition variable, so an idle pool takes no CPU.
typedef struct sn_pool sn_pool;

/// A pool of `threads` members (`threads - 1` new threads); NULL if threads could not be made.
sn_pool *sn_pool_create(int threads);
/// Stops and joins the threads. The pool must be idle.
void sn_pool_destroy(sn_pool *pool);
int sn_pool_size(const sn_pool *pool);
/// Calls `fn(ctx, 0, n)` on the caller and `fn(ctx, i, n)` on every other member i that joins before
/// the caller's own call has returned (a descheduled or sleeping member is not waited for), and
/// returns when every call has returned. `fn` must therefore take its work from a shared counter,
/// never by `i` alone (as sn_pool_for, sn_pool_matmul and sn_pool_attention do). Not reentrant:
/// one caller at a time.
void sn_pool_run(sn_pool *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/// Calls `fn(ctx, index, member)` once for every `index < count`, the indices taken in order from a
/// shared counter by whichever member is free (a descheduled member does less, not late); `member`
/// is the calling member's number (for its own scratch). Returns when every call has returned.
void sn_pool_for(sn_pool *pool, int count, void (*fn)(void *ctx, int index, int member), void *ctx);

/// Runs `count` matrix products that share `tokens` activations on the pool: the rows of all jobs
/// are split evenly among the members.
void sn_pool_matmul(sn_pool *pool, const sn_matmul_job *jobs, int count,
                    const uint8_t *a, size_t a_stride, int tokens);

/// `sn_q4_1_rows_direct` for every row of `count` packed Q4_1 jobs (a `sn_pool_matmul` plan's) on the
/// pool, in chunks as `sn_pool_matmul` takes them: activation t's outputs go to row `first_token + t`
/// of each job's output (`out[(first_token + t) * out_stride + r]`). Q8_1 activations `a_stride` bytes
/// apart, their `sn_q4_1_activation_scales` `ds_stride` floats apart.
void sn_pool_q4_1_direct(sn_pool *pool, const sn_matmul_job *jobs, int count, int first_token, const uint8_t *a,
                         size_t a_stride, const float *ds, size_t ds_stride, int tokens);

/// One attention task of `sn_pool_attention`.
typedef struct {
    const float *query;
    const uint16_t *keys;
    const uint16_t *values;
    int positions;
    int tiny;
    float *out;
    /// First unmasked position (0 without a sliding window).
    int first;
} sn_attention_task;

/// Runs `count` attention heads (all with `stride`, `head_dim`, `scale`, `softcap`, `width`) on the pool;
/// `scratch` holds `sn_pool_size(pool) * sn_attention_scratch(max positions, head_dim)` floats.
void sn_pool_attention(sn_pool *pool, const sn_attention_task *tasks, int count, size_t stride,
                       int head_dim, float scale, float softcap, int width, float *scratch, size_t scratch_per_member);

#ifdef __cplusplus
}
#endif
#endif
