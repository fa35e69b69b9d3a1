"""The device suite of scripts/benchmark.py: one table of what a GPU or TPU does with DPA-2.

    python scripts/benchmark.py --suite device            # small DPA-2; under 5 minutes on a GPU
    python scripts/benchmark.py --suite device --quick    # tiny DPA-2, small boxes: any CPU

Per precision (float32, float64), each case in its own process (so that its peak memory is its
own): the training step on one 192-atom water frame (seconds, and XLA's bytes and flops per
step), energy + forces on a 192-atom frame and on a large tiled box, NVE MD steps, and how many
atoms fit in a GB (the large box's atoms over its peak memory: the device's own count on a GPU
or TPU, the process's resident memory on a CPU, which includes Python and JAX themselves).
"""

from __future__ import annotations

from collections.abc import Callable

PRECISIONS = ("float32", "float64")

# Settings of the full suite and of its quick form (CPU-sized, for tests and a first look).
SETTINGS = {
    False: {"model": "small", "ef_atoms": (192, 98304), "md_atoms": 12288, "md_steps": 10,
            "repeats": 5},
    True: {"model": "tiny", "ef_atoms": (192, 1536), "md_atoms": 192, "md_steps": 2,
           "repeats": 2},
}  # fmt: skip


def case_names(quick: bool) -> list[str]:
    """The worker cases of the suite, in the order they run."""
    s = SETTINGS[quick]
    names = []
    for p in PRECISIONS:
        names.append(f"device_train_{p}")
        names += [f"device_ef_{n}_{p}" for n in s["ef_atoms"]]
        names.append(f"device_md_{p}")
    return names


def cases(train_step: Callable, inference: Callable, md_nve: Callable) -> dict[str, Callable]:
    """Worker functions ``args -> dict`` by case name, for both forms (``args.quick`` picks);
    the three arguments are scripts/benchmark.py's case functions."""
    out = {}
    for p in PRECISIONS:
        out[f"device_train_{p}"] = lambda a, p=p: train_step(
            SETTINGS[a.quick]["model"], p, SETTINGS[a.quick]["repeats"]
        )
        for n in sorted({n for s in SETTINGS.values() for n in s["ef_atoms"]}):
            out[f"device_ef_{n}_{p}"] = lambda a, p=p, n=n: inference(
                SETTINGS[a.quick]["model"], p, n, SETTINGS[a.quick]["repeats"]
            )
        out[f"device_md_{p}"] = lambda a, p=p: md_nve(
            SETTINGS[a.quick]["model"], p, SETTINGS[a.quick]["md_atoms"],
            SETTINGS[a.quick]["repeats"], SETTINGS[a.quick]["md_steps"],
        )  # fmt: skip
    return out


def _number(result: dict, key: str, scale: float = 1.0, digits: int = 4) -> str:
    if "error" in result:
        return "error"
    value = result.get(key)
    return "-" if value is None else f"{value * scale:.{digits}g}"


def _atoms_per_gb(result: dict) -> str:
    if "error" in result:
        return "error"
    peak = result.get("peak_device_gb") or result.get("peak_rss_gb")
    return f"{result['atoms'] / peak:.4g}" if peak else "-"


def table(results: dict[str, dict], quick: bool, device: str) -> str:
    """The suite's results as a markdown table, one column per precision."""
    s = SETTINGS[quick]
    big = s["ef_atoms"][-1]
    memory = "device peak" if any(r.get("peak_device_gb") for r in results.values()) else "RSS"
    rows = [("train step, 192 atoms, s", "device_train_{}", "seconds_per_step", 1.0),
            ("train step, XLA bytes accessed, GB", "device_train_{}", "bytes_accessed", 1e-9),
            ("train step, XLA flops, G", "device_train_{}", "flops", 1e-9)]  # fmt: skip
    rows += [(f"energy + forces, {n} atoms, s", f"device_ef_{n}_{{}}", "seconds_per_frame", 1.0)
             for n in s["ef_atoms"]]  # fmt: skip
    rows += [(f"energy + forces, {big} atoms, us/atom", f"device_ef_{big}_{{}}", "us_per_atom",
              1.0),
             (f"MD step, {s['md_atoms']} atoms, s", "device_md_{}", "seconds_per_step",
              1.0)]  # fmt: skip
    lines = [f"DPA-2 {s['model']} on {device}" + (" (quick form)" if quick else ""), "",
             "| case | " + " | ".join(PRECISIONS) + " |",
             "| --- | " + " | ".join("---:" for _ in PRECISIONS) + " |"]  # fmt: skip
    for label, name, key, scale in rows:
        cells = [_number(results.get(name.format(p), {"error": "not run"}), key, scale)
                 for p in PRECISIONS]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [_atoms_per_gb(results.get(f"device_ef_{big}_{p}", {"error": "not run"}))
             for p in PRECISIONS]  # fmt: skip
    lines.append(f"| atoms per GB ({memory}, energy + forces, {big} atoms) | "
                 + " | ".join(cells) + " |")  # fmt: skip
    errors = [f"{k}: {r['error']}" for k, r in results.items() if "error" in r]
    return "\n".join(lines + [""] + errors)
