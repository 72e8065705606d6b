"""Is llama.cpp's own output independent of how the tokens are batched? For each reference prompt and
its committed greedy continuation (a *-greedy.json fixture), llama.cpp evaluates the same tokens two
ways: the prompt in one batch then one token per call (how greedy decoding runs, and how the fixtures
were made), and the prompt with the whole continuation in one batch (logits_all). Both are run with
flash attention off (llama-cpp-python's default, the fixtures' setting) and on. Prints, per prompt,
the largest |difference| of the two logit vectors at each position and the first position where they
differ, and writes a Markdown table.

    PEER_PYTHON bench/llama_batch_invariance.py --model M.gguf --greedy FIXTURE.json [--tokens 32] [--out F.md]
"""
import argparse, json, platform

import numpy as np
import llama_cpp


def logits(llm, vocab, i):
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(i), shape=(vocab,)).copy()


def run(model, ids, out, flash, mode, threads):
    llm = llama_cpp.Llama(model_path=model, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=threads,
                          n_threads_batch=threads, verbose=False, logits_all=True, flash_attn=flash)
    vocab = llm.n_vocab()
    if mode == "step":
        llm.eval(ids)
        rows = [logits(llm, vocab, -1)]
        for tok in out[:-1]:
            llm.eval([tok])
            rows.append(logits(llm, vocab, -1))
    else:
        llm.eval(ids + out[:-1])
        rows = [logits(llm, vocab, i) for i in range(len(ids) - 1, len(ids) + len(out) - 1)]
    del llm
    return np.array(rows, dtype=np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--greedy", required=True, help="a *-greedy.json fixture: prompt_ids and output_ids")
    p.add_argument("--tokens", type=int, default=32, help="continuation tokens to compare")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    a = p.parse_args()
    fixture = json.load(open(a.greedy))
    lines = [f"llama.cpp {llama_cpp.__version__} (llama-cpp-python, CPU, {a.threads} threads, {platform.machine()}), "
             f"model `{a.model.split('/')[-1]}`, continuations from `{a.greedy.split('/')[-1]}` ({a.tokens} tokens)", "",
             "| prompt | flash attention | first position where one-token steps differ from one batch | max \\|difference\\| | steps' argmax equal to batch's |",
             "|---|---|---|---|---|"]
    for r in fixture["results"]:
        ids, out = r["prompt_ids"], r["output_ids"][: a.tokens]
        for flash in (False, True):
            step, batch = run(a.model, ids, out, flash, "step", a.threads), run(a.model, ids, out, flash, "batch", a.threads)
            d = np.abs(step - batch).max(axis=1)
            first = int(np.argmax(d > 0)) if (d > 0).any() else None
            same_argmax = int((np.argmax(step, 1) == np.argmax(batch, 1)).sum())
            lines.append(f"| {r['prompt']!r} | {'on' if flash else 'off'} | {first if first is not None else 'none'} "
                         f"| {d.max():.4f} | {same_argmax} of {len(d)} |")
            print(lines[-1], flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
