// A fixed team of threads for the transformer's data-parallel operations (see sn_kernels.h).
//
// One job at a time: the caller publishes (fn, ctx) and `size - 1` seats, bumps `generation`, runs
// member 0 itself, then closes the job (no seat left) and waits only for the members that took a
// seat. Every job takes its work from a shared counter, so once the caller's own fn has returned all
// the work is taken: a member that was descheduled (another process, or the node's own HTTP threads,
// wanted the core) or still asleep is not waited for, and joins a later job instead. Members spin
// on `generation` for a bounded time after each job (decode runs hundreds of jobs per token,
// microseconds apart: a futex wake-up per job would cost more than the work), then sleep on a
// condition variable so that an idle node takes no CPU.
#include "sn_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define SN_PAUSE() _mm_pause()
#else
#define SN_PAUSE() ((void)0)
#endif

/// How long an idle member spins before it sleeps.
#define SN_SPIN_NANOSECONDS 200000LL

struct sn_pool {
    int size;
    pthread_t *threads;
    struct member { sn_pool *pool; int index; } *members;
    _Atomic unsigned generation;
    /// Seats still open in the current job (bits 16 and up) and members inside it (bits 0-15).
    _Atomic unsigned seats;
    _Atomic int stopping;
    _Atomic int sleepers;
    void (*fn)(void *, int, int);
    void *ctx;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *member_main(void *arg) {
    struct member *m = arg;
    sn_pool *pool = m->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g == seen && !atomic_load(&pool->stopping)) {
            const long long deadline = now_ns() + SN_SPIN_NANOSECONDS;
            int spins = 0;
            while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                   !atomic_load_explicit(&pool->stopping, memory_order_relaxed)) {
                SN_PAUSE();
                if (++spins % 256 == 0 && now_ns() > deadline) break;
            }
            if (g == seen) {
                pthread_mutex_lock(&pool->mutex);
                atomic_fetch_add(&pool->sleepers, 1);
                while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stopping))
                    pthread_cond_wait(&pool->wake, &pool->mutex);
                atomic_fetch_sub(&pool->sleepers, 1);
                pthread_mutex_unlock(&pool->mutex);
            }
        }
        if (atomic_load(&pool->stopping)) return NULL;
        seen = g;
        // Take a seat if the job (this one, or a later one if this member was away) still has one;
        // fn and ctx are read only then (they were written before the seats were opened).
        unsigned s = atomic_load(&pool->seats);
        while (s >> 16) {
            if (atomic_compare_exchange_weak(&pool->seats, &s, s - (1u << 16) + 1)) {
                pool->fn(pool->ctx, m->index, pool->size);
                atomic_fetch_sub(&pool->seats, 1);
                break;
            }
        }
    }
}

sn_pool *sn_pool_create(int threads) {
    if (threads < 1) threads = 1;
    sn_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->size = threads;
    pool->threads = calloc((size_t)threads, sizeof *pool->threads);
    pool->members = calloc((size_t)threads, sizeof *pool->members);
    if (!pool->threads || !pool->members) {
        free(pool->threads); free(pool->members); free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    for (int i = 1; i < threads; i++) {
        pool->members[i] = (struct member){pool, i};
        if (pthread_create(&pool->threads[i], NULL, member_main, &pool->members[i]) != 0) {
            pool->size = i;  // join the ones that started
            sn_pool_destroy(pool);
            return NULL;
        }
    }
    return pool;
}

void sn_pool_destroy(sn_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stopping, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->size; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool->members);
    free(pool);
}

int sn_pool_size(const sn_pool *pool) { return pool ? pool->size : 1; }

/// Every caller's fn takes its work from a shared counter (for_member, chunked_member,
/// attention_member), so "every member" of sn_kernels.h's contract is met as "every member that
/// joined before the caller's own fn returned": the others had nothing left to do.
void sn_pool_run(sn_pool *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx) {
    if (!pool || pool->size == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    // No member is inside (the last job ended with none) and none can enter a closed job: open it.
    atomic_store(&pool->seats, (unsigned)(pool->size - 1) << 16);
    atomic_fetch_add(&pool->generation, 1);  // seq_cst: ordered before the sleepers check
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    fn(ctx, 0, pool->size);
    // All the work is taken: close the seats, then wait for the members inside. They normally finish
    // within microseconds of the caller; if one was descheduled mid-chunk, yield rather than spin
    // against it.
    unsigned s = atomic_load(&pool->seats);
    while (!atomic_compare_exchange_weak(&pool->seats, &s, s & 0xffffu)) {}
    for (int spins = 0; atomic_load(&pool->seats) != 0; spins++) {
        if (spins < 4096) SN_PAUSE(); else sched_yield();
    }
}

// MARK: - Parallel operations

struct for_ctx {
    void (*fn)(void *, int, int);
    void *ctx;
    int count;
    _Atomic int next;
};

static void for_member(void *arg, int ith, int nth) {
    (void)nth;
    struct for_ctx *c = arg;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->count) return;
        c->fn(c->ctx, i, ith);
    }
}

void sn_pool_for(sn_pool *pool, int count, void (*fn)(void *ctx, int index, int member), void *ctx) {
    struct for_ctx c = {fn, ctx, count, 0};
    if (count <= 1) {
        for_member(&c, 0, 1);
        return;
    }
    sn_pool_run(pool, for_member, &c);
}

/// The rows of jobs laid end to end, split into chunks of `chunk` rows (a multiple of 8, so that
/// tiles and Q4_0's packed groups of eight rows stay whole where the jobs' rows are multiples of 8)
/// that members take from a shared counter: a member that was descheduled for a while does less, not
/// late. `rows(ctx, job, first, last)` runs a chunk's part of one job.
struct chunked_rows {
    const sn_matmul_job *jobs;
    int count;
    int total_rows;
    int chunk;
    void (*rows)(const void *ctx, const sn_matmul_job *job, int first, int last);
    const void *ctx;
    _Atomic int next;
};

static void chunked_member(void *arg, int ith, int nth) {
    (void)ith; (void)nth;
    struct chunked_rows *c = arg;
    for (;;) {
        const long long begin = (long long)atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) * c->chunk;
        if (begin >= c->total_rows) return;
        const long long end = begin + c->chunk < c->total_rows ? begin + c->chunk : c->total_rows;
        long long offset = 0;
        for (int j = 0; j < c->count && offset < end; j++) {
            const sn_matmul_job *job = &c->jobs[j];
            const long long first = begin > offset ? begin - offset : 0;
            const long long last = end - offset < job->rows ? end - offset : job->rows;
            if (first < last) c->rows(c->ctx, job, (int)first, (int)last);
            offset += job->rows;
        }
    }
}

/// Runs `c` on the pool in chunks of about an eighth of a member's share, at least `minimum` and at
/// most 256 rows (a chunk's weights stay in the core's L2 cache while a kernel passes over them once
/// per eight activations: the 49152-row output projection made 3072-row chunks, read again from L3
/// for every eight rows); alone on the caller when the product is small (rows * blocks * tokens
/// under 2048: not worth waking anyone for).
static void run_chunked(sn_pool *pool, struct chunked_rows *c, int minimum, int tokens) {
    c->total_rows = 0;
    for (int j = 0; j < c->count; j++) c->total_rows += c->jobs[j].rows;
    const int members = sn_pool_size(pool);
    const int chunk = c->total_rows / (8 * members);
    c->chunk = chunk < minimum ? minimum : chunk > 256 ? 256 : chunk / 8 * 8;
    if ((long long)c->total_rows * c->jobs[0].blocks * tokens < 2048 || members == 1) {
        c->chunk = c->total_rows;
        chunked_member(c, 0, 1);
        return;
    }
    sn_pool_run(pool, chunked_member, c);
}

struct matmul_ctx {
    const uint8_t *a;
    size_t a_stride;
    int tokens;
    /// `sn_vnni_activation_tables` of `a`, made once for every member (NULL: none).
    const float *tables;
};

static void matmul_rows(const void *ctx, const sn_matmul_job *job, int first, int last) {
    const struct matmul_ctx *c = ctx;
    if (c->tables) sn_matmul_rows_vnni_tables(job, first, last, c->a, c->a_stride, c->tokens, c->tables);
    else sn_matmul_rows(job, first, last, c->a, c->a_stride, c->tokens);
}

void sn_pool_matmul(sn_pool *pool, const sn_matmul_job *jobs, int count,
                    const uint8_t *a, size_t a_stride, int tokens) {
    struct matmul_ctx m = {a, a_stride, tokens, NULL};
    // Q4_1 with several activations and AVX512-VNNI: the activations' scale tables once here, not
    // once in every chunk of rows a member takes (chunks of 32-56 rows spent about 5% of the
    // products' time making them again, in a perf profile of serve at 16 streams).
    enum { TABLE_TOKENS = 64, TABLE_BLOCKS = 64 };
    float tables[2 * TABLE_TOKENS * TABLE_BLOCKS];
    int q4 = tokens > 1 && tokens <= TABLE_TOKENS && jobs[0].blocks <= TABLE_BLOCKS;
    for (int j = 0; j < count && q4; j++) q4 = jobs[j].type == SN_Q4_1 && jobs[j].blocks == jobs[0].blocks;
    if (q4 && sn_use_vnni()) {
        sn_vnni_activation_tables(SN_Q4_1, a, a_stride, tokens, jobs[0].blocks, tables);
        m.tables = tables;
    }
    struct chunked_rows c = {jobs, count, 0, 0, matmul_rows, &m, 0};
    run_chunked(pool, &c, 16, tokens);
}

struct direct_ctx {
    int first_token, tokens;
    const uint8_t *a;
    size_t a_stride, ds_stride;
    const float *ds;
};

static void direct_rows(const void *ctx, const sn_matmul_job *job, int first, int last) {
    const struct direct_ctx *c = ctx;
    sn_q4_1_rows_direct(job->w, job->row_bytes, job->rows, 1, first, last - first, job->blocks, c->a, c->a_stride, c->ds,
                        c->ds_stride, c->tokens, job->out + (size_t)c->first_token * job->out_stride + first, job->out_stride);
}

void sn_pool_q4_1_direct(sn_pool *pool, const sn_matmul_job *jobs, int count, int first_token, const uint8_t *a,
                         size_t a_stride, const float *ds, size_t ds_stride, int tokens) {
    const struct direct_ctx d = {first_token, tokens, a, a_stride, ds_stride, ds};
    struct chunked_rows c = {jobs, count, 0, 0, direct_rows, &d, 0};
    // As `sn_pool_matmul`, but chunks of at least 64 rows: each starts a new stream from memory
    // (`bench/decoding.sh`, SmolLM2, two threads: a 16-row minimum 1.01x the one-token decoding, 64
    // 1.10x, 128 1.13x, 256 1.10x; medians of three pairs).
    run_chunked(pool, &c, 64, tokens);
}

struct attention_ctx {
    const sn_attention_task *tasks;
    int count;
    size_t stride;
    int head_dim;
    float scale;
    float softcap;
    int width;
    float *scratch;
    size_t scratch_per_member;
    _Atomic int next;
};

static void attention_member(void *arg, int ith, int nth) {
    (void)nth;
    struct attention_ctx *c = arg;
    float *scratch = c->scratch + (size_t)ith * c->scratch_per_member;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->count) return;
        const sn_attention_task *t = &c->tasks[i];
        sn_attention_head(t->query, t->keys, t->values, c->stride, t->positions, t->first, c->head_dim, c->scale,
                          c->softcap, t->tiny, c->width, scratch, t->out);
    }
}

void sn_pool_attention(sn_pool *pool, const sn_attention_task *tasks, int count, size_t stride,
                       int head_dim, float scale, float softcap, int width, float *scratch, size_t scratch_per_member) {
    struct attention_ctx c = {tasks, count, stride, head_dim, scale, softcap, width, scratch, scratch_per_member, 0};
    if (count == 1) {
        attention_member(&c, 0, 1);
        return;
    }
    sn_pool_run(pool, attention_member, &c);
}
