"""The fast inference paths (srhub.accel): selection, equal outputs, fallbacks and the off switch."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import srhub
from srhub import accel
from srhub.accel import Plan, choose_plan, fast_forward, make_runner
from srhub.export import ExportError
from srhub.inference import tiled_forward

CPU = torch.device("cpu")
ALL = ("openvino", "onnxruntime", "torch")


def tiny_rrdb(scale=4):
    return srhub.RRDBNet(scale=scale, num_features=8, num_blocks=1, growth_channels=4).eval()


def tiny_vgg():
    return srhub.SRVGGNetCompact(scale=4, num_features=8, num_convs=2).eval()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SRHUB_CACHE", str(tmp_path / "cache"))
    accel._runners.clear()
    accel._failed.clear()
    yield
    accel._runners.clear()
    accel._failed.clear()
    accel._ahead.clear()


# ---------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    "model, precision, runtimes, native_bf16, expected",
    [
        (tiny_rrdb(), "auto", ALL, True, Plan("openvino", "mixed", "cpu")),  # RRDBNet: bf16 convs, fp32 sums
        (tiny_rrdb(), "auto", ALL, False, Plan("openvino", "fp32", "cpu")),  # ... only where bf16 is native
        (tiny_rrdb(), "auto", ("onnxruntime", "torch"), True, Plan("onnxruntime", "fp32", "cpu")),  # needs OpenVINO
        (tiny_rrdb(), "fp32", ALL, True, Plan("openvino", "fp32", "cpu")),
        (tiny_vgg(), "auto", ALL, True, Plan("openvino", "bf16", "cpu")),  # SRVGG: bf16 where native
        (tiny_vgg(), "auto", ALL, False, Plan("openvino", "fp32", "cpu")),  # no native bf16: fp32
        (tiny_vgg(), "fp32", ALL, True, Plan("openvino", "fp32", "cpu")),  # explicit fp32 is honoured
        (tiny_vgg(), "auto", ("onnxruntime", "torch"), True, Plan("onnxruntime", "fp32", "cpu")),  # no OpenVINO
        (tiny_rrdb(), "bf16", ("onnxruntime", "torch"), True, Plan("torch", "bf16", "cpu")),  # ORT has no bf16 here
        (tiny_rrdb(), "bf16", ALL, False, Plan("torch", "bf16", "cpu")),  # OpenVINO would not compute bf16
        (tiny_rrdb(), "auto", ("torch",), True, Plan("torch", "fp32", "cpu")),  # nothing installed
        (tiny_rrdb(), "fp16", ALL, True, None),  # fp16 on the CPU: eager
    ],
)
def test_cpu_selection(model, precision, runtimes, native_bf16, expected):
    assert choose_plan(model, device=CPU, precision=precision, runtimes=runtimes, native_bf16=native_bf16) == expected


def test_gpu_selection_needs_no_gpu():
    model = tiny_rrdb()
    assert choose_plan(model, device="cuda", precision="auto", runtimes=ALL) == Plan("torch", "fp16", "cuda")
    assert choose_plan(model, device="cuda:1", precision="bf16") == Plan("torch", "bf16", "cuda")
    assert choose_plan(model, device="cuda", precision="auto", cuda_graphs=True).cuda_graphs
    assert choose_plan(model, device="mps", precision="auto") is None


def test_only_srhub_generators_get_a_fast_path():
    plain = torch.nn.Conv2d(3, 3, 1)
    plain.scale = 1
    assert choose_plan(plain, device=CPU, precision="auto", runtimes=ALL) is None
    assert choose_plan(srhub.VGGStyleDiscriminator(), device=CPU, precision="auto", runtimes=ALL) is None
    assert fast_forward(plain, plain, device=CPU, precision="auto") is plain


# ---------------------------------------------------------------------- equal outputs
def _max_abs(runner, model, lq):
    with torch.no_grad():
        expected = model(lq)
        got = runner(lq)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    return float((got - expected).abs().max())


FP32_PLANS = [Plan("torch", "fp32", "cpu"), Plan("onnxruntime", "fp32", "cpu"), Plan("openvino", "fp32", "cpu")]


@pytest.mark.parametrize("plan", FP32_PLANS, ids=lambda p: p.runtime)
@pytest.mark.parametrize("make", [tiny_rrdb, lambda: tiny_rrdb(2), tiny_vgg], ids=["rrdb4", "rrdb2", "vgg"])
def test_fp32_paths_equal_eager(plan, make):
    if not accel.runtime_installed(plan.runtime):
        pytest.skip(f"{plan.runtime} not installed")
    model = make().eval()
    runner = make_runner(model, model, plan, threads=1)
    m = model.size_multiple
    for size in [(24, 40), (36, 20)]:  # sizes other than the traced one (64x64)
        lq = torch.rand(1, 3, size[0] // m * m, size[1] // m * m)
        assert _max_abs(runner, model, lq) < 1e-4


def _real_crop(datasets_root, side=32):
    image = Image.open(datasets_root / "benchmark" / "Set5" / "butterfly.png").convert("RGB")
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    lq = torch.nn.functional.interpolate(pixels[None], scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    return lq[..., :side, :side].contiguous()


def _assert_reduced_precision_within_bounds(model, plan, lq):
    """The plan's output differs from float32 (it really ran in reduced precision) by at most 0.5/255 mean abs, 45 dB."""
    runner = make_runner(model, model, plan, threads=2)
    with torch.no_grad():
        expected, got = model(lq), runner(lq)
    mean_abs = float((got - expected).abs().mean()) * 255
    mse = float((got.clamp(0, 1) - expected.clamp(0, 1)).pow(2).mean())
    assert 0 < mean_abs <= 0.5
    assert 10 * math.log10(1 / mse) >= 45


@pytest.mark.parametrize("plan", [Plan("openvino", "bf16", "cpu"), Plan("torch", "bf16", "cpu")], ids=lambda p: p.runtime)
def test_bf16_paths_within_claimed_tolerance_on_real_weights(plan, datasets_root):
    """The auto bf16 choice (SRVGGNetCompact) stays within 0.5/255 mean abs and 45 dB of float32."""
    if not accel.runtime_installed(plan.runtime):
        pytest.skip(f"{plan.runtime} not installed")
    if not accel.cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    model = srhub.load("realesr-animevideov3-x4").eval()
    _assert_reduced_precision_within_bounds(model, plan, _real_crop(datasets_root))


def test_rrdbnet_mixed_bfloat16_copy():
    """Dense blocks in bf16, everything else (first conv, residual sums, upsampler) float32; the original untouched."""
    torch.manual_seed(0)
    model = srhub.RRDBNet(scale=2, num_features=16, num_blocks=2, growth_channels=8).eval()
    mixed = model.mixed_bfloat16()
    dtypes = {name: p.dtype for name, p in mixed.named_parameters()}
    assert {d for n, d in dtypes.items() if n.startswith("body.")} == {torch.bfloat16}
    assert {d for n, d in dtypes.items() if not n.startswith("body.")} == {torch.float32}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    lq = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        trunk_in = model.conv_first(torch.nn.functional.pixel_unshuffle(lq, 2))
        block = mixed.body[0].rdb1
        out = block(trunk_in)
        expected, got = model(lq), mixed(lq)
    assert out.dtype == torch.float32  # the residual sum stays float32 around a bf16 block
    assert got.dtype == torch.float32
    assert 0 < float((got - expected).abs().max()) < 2e-2


def test_mixed_path_on_real_weights(datasets_root):
    """realesrgan-x4plus's auto path (OpenVINO, bf16 dense blocks) stays within 0.5/255 mean abs and 45 dB of float32."""
    if not accel.runtime_installed("openvino"):
        pytest.skip("openvino not installed")
    if not accel.cpu_has_native_bf16():
        pytest.skip("no native bf16 on this CPU")
    model = srhub.load("realesrgan-x4plus").eval()
    plan = choose_plan(model, device=CPU, precision="auto")
    assert plan == Plan("openvino", "mixed", "cpu")
    _assert_reduced_precision_within_bounds(model, plan, _real_crop(datasets_root))
    with pytest.raises(ValueError, match="OpenVINO only"):
        make_runner(model, model, Plan("onnxruntime", "mixed", "cpu"))


def test_openvino_compiles_repeated_shapes_statically():
    pytest.importorskip("openvino")
    model = tiny_vgg()
    runner = accel._OpenVINORunner(accel.exported_graph(model), precision="fp32", threads=1, max_static=1)
    a, b = torch.rand(1, 3, 20, 24), torch.rand(1, 3, 28, 16)
    for lq in (a, a, a, b, b):  # a: dynamic, then static; b: the same, evicting a
        with torch.no_grad():
            assert float((runner(lq) - model(lq)).abs().max()) < 1e-4
    assert list(runner.static) == [tuple(b.shape)]


def test_openvino_compiled_graphs_are_cached_on_disk(tmp_path):
    """A new process's first call loads what an earlier process compiled: the IR, the compiled
    blobs and the static shapes it saw, so its first tile runs on a static graph at once."""
    pytest.importorskip("openvino")
    model = tiny_vgg()
    graph = accel.exported_graph(model)
    lq = torch.rand(1, 3, 20, 24)
    first = accel._OpenVINORunner(graph, precision="fp32", threads=1)
    first(lq), first(lq)  # dynamic, then compiled static: a marker and a blob are written
    cache = tmp_path / "cache" / "openvino"
    assert len(list(cache.glob("graph-*.xml"))) == 1 and list(cache.glob("*.blob"))
    assert [p.name for p in cache.glob("static-*.xml")] == [f"static-{first.key}-1x3x20x24.xml"]
    second = accel._OpenVINORunner(  # as in a new process: the ONNX graph is never read
        lambda: pytest.fail("read the ONNX graph"), precision="fp32", threads=1, key=first.key
    )
    with torch.no_grad():
        assert float((second(lq) - model(lq)).abs().max()) < 1e-4
    assert list(second.static) == [tuple(lq.shape)] and second._dynamic is None  # static at first sight
    other = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert float((second(other) - model(other)).abs().max()) < 1e-4
    assert second._dynamic is not None  # a shape never compiled before starts on the dynamic graph (the IR)


def test_prewarm_compiles_the_static_graph_a_name_ran_last(tmp_path, monkeypatch):
    """srhub.load(name) starts compiling, in a thread, the static graph that name ran last; the
    runner takes that compile only for the same IR file and settings."""
    pytest.importorskip("openvino")
    import json

    model, lq = tiny_vgg(), torch.rand(1, 3, 20, 24)
    threads = torch.get_num_threads()
    first = accel._OpenVINORunner(accel.exported_graph(model), precision="fp32", threads=threads, name="tiny-vgg")
    first(lq), first(lq)  # dynamic, then static: the name's record points at the static IR
    cache = tmp_path / "cache" / "openvino"
    record = json.loads((cache / "recent-tiny-vgg.json").read_text())
    assert record["xml"] == f"static-{first.key}-1x3x20x24.xml" and record["config"] == first.config
    assert accel.prewarm("tiny-vgg") and not accel.prewarm("tiny-vgg")  # one compile ahead per graph
    second = accel._OpenVINORunner(  # as in a new process
        lambda: pytest.fail("read the ONNX graph"), precision="fp32", threads=threads, key=first.key, name="tiny-vgg"
    )
    with torch.no_grad():
        assert float((second(lq) - model(lq)).abs().max()) < 1e-4
    assert not accel._ahead and list(second.static) == [tuple(lq.shape)]  # it took the compile ahead
    # a compile ahead that the first call does not take is dropped with that call
    assert accel.prewarm("tiny-vgg")
    third = accel._OpenVINORunner(lambda: accel.exported_graph(model), precision="fp32", threads=threads, key=first.key,
                                  name="tiny-vgg")  # fmt: skip
    third(torch.rand(1, 3, 24, 24))
    assert not accel._ahead
    # guesses that do not fit start nothing
    assert not accel.prewarm("never-ran") and not accel.prewarm("../tiny-vgg")
    (cache / "recent-broken.json").write_text("{not json")
    (cache / "recent-gone.json").write_text(json.dumps({**record, "xml": "static-gone-1x3x8x8.xml"}))
    (cache / "recent-threads.json").write_text(json.dumps({**record, "config": {**record["config"], "INFERENCE_NUM_THREADS": threads + 1}}))
    assert not any(accel.prewarm(name) for name in ("broken", "gone", "threads"))
    # a broken OpenVINO install never breaks loading
    import builtins

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("libopenvino.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "__import__", failing_import)
        assert not accel.prewarm("tiny-vgg") and not accel._ahead
    # srhub.load of a pretrained name asks for it and tags the model with its name
    asked = []
    monkeypatch.setattr(accel, "prewarm", lambda name: asked.append(name) or False)
    assert srhub.load("fsrcnn-x2").pretrained_name == "fsrcnn-x2" and asked == ["fsrcnn-x2"]


def test_openvino_blob_cache_is_pruned_oldest_first(tmp_path, monkeypatch):
    folder = tmp_path / "cache" / "openvino"
    folder.mkdir(parents=True)
    for index in range(5):
        (folder / f"{index}.blob").write_bytes(b"x" * 100)
        os.utime(folder / f"{index}.blob", (1000 + index, 1000 + index))
    monkeypatch.setattr(accel, "OPENVINO_CACHE_BYTES", 250)
    accel._pruned.clear()
    assert accel._openvino_cache_dir() == folder
    assert sorted(p.name for p in folder.glob("*.blob")) == ["3.blob", "4.blob"]


def test_static_ir_files_are_bounded_per_graph():
    pytest.importorskip("openvino")
    model = tiny_vgg()
    runner = accel._OpenVINORunner(accel.exported_graph(model), precision="fp32", threads=1, max_static=8)
    for side in range(16, 16 + 2 * (accel.MAX_STATIC_IR + 2), 2):
        lq = torch.rand(1, 3, side, side)
        runner(lq), runner(lq)
    cache = runner.cache
    assert len(list(cache.glob(f"static-{runner.key}-*.xml"))) == accel.MAX_STATIC_IR
    assert len(list(cache.glob(f"static-{runner.key}-*.bin"))) == accel.MAX_STATIC_IR


def test_mixed_graph_cache_hit_builds_no_mixed_copy(monkeypatch):
    pytest.importorskip("onnx")
    model = tiny_rrdb()
    first = accel.exported_graph(model, mixed=True)
    monkeypatch.setattr(type(model), "mixed_bfloat16", lambda self: pytest.fail("built the mixed copy again"))
    assert accel.exported_graph(model, mixed=True) == first != accel.exported_graph(model)


def test_tiny_tiles_run_in_pytorch():
    model = tiny_vgg()
    calls = []

    def net(lq):
        calls.append(tuple(lq.shape))
        return model(lq)

    runner = accel._WithFallback(lambda lq: pytest.fail("fast path used for a tiny tile"), net, Plan("onnxruntime", "fp32", "cpu"))
    runner(torch.rand(1, 3, 8, 30))
    assert calls == [(1, 3, 8, 30)]


def test_runtime_failure_on_a_tile_runs_it_in_pytorch():
    model = tiny_vgg()

    def broken(lq):
        raise RuntimeError("runtime exploded")

    runner = accel._WithFallback(broken, model, Plan("openvino", "fp32", "cpu"))
    lq = torch.rand(1, 3, 20, 20)
    with pytest.warns(UserWarning, match="runtime exploded"):
        out = runner(lq)
    with torch.no_grad():
        assert torch.equal(out, model(lq))


# ---------------------------------------------------------------------- hook, fallback, off switch, caches
def test_upscale_uses_fast_path_and_matches_eager():
    model = tiny_vgg()
    image = torch.rand(3, 40, 36)
    with torch.no_grad():
        eager = srhub.upscale(image, model=model, fast=False, precision="fp32")
        fast = srhub.upscale(image, model=model, precision="fp32")
    assert fast.shape == eager.shape == (3, 160, 144)
    assert float((fast - eager).abs().max()) < 1e-4
    assert any(entry[2] is not None for entry in accel._runners.values())


def test_off_switch_never_builds_a_fast_path(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("fast path built although fast=False")

    monkeypatch.setattr(accel, "fast_forward", boom)
    out = tiled_forward(tiny_vgg(), torch.rand(1, 3, 20, 20), fast=False)
    assert out.shape == (1, 3, 80, 80)
    with pytest.raises(AssertionError, match="fast path built"):
        tiled_forward(tiny_vgg(), torch.rand(1, 3, 20, 20))


def test_cli_no_fast(tmp_path, monkeypatch):
    from srhub.cli import main

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        from srhub.inference import BatchReport

        return BatchReport()

    monkeypatch.setattr("srhub.inference.upscale_files", fake)
    assert main(["upscale", "x.png", "-o", str(tmp_path), "--model", "m", "--no-fast"]) == 0
    assert seen["fast"] is False
    assert main(["upscale", "x.png", "-o", str(tmp_path), "--model", "m"]) == 0
    assert seen["fast"] is True


def test_export_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def fail(model, **kwargs):
        raise ExportError("cannot export this one")

    monkeypatch.setattr(accel, "exported_graph", fail)
    model = tiny_rrdb()
    plan = Plan("onnxruntime", "fp32", "cpu")
    with pytest.warns(UserWarning, match="cannot export this one"):
        assert fast_forward(model, model, device=CPU, precision="auto", plan=plan) is model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fast_forward(model, model, device=CPU, precision="auto", plan=plan) is model  # remembered


def test_runner_rebuilt_when_weights_change():
    pytest.importorskip("onnxruntime")
    model = tiny_vgg()
    plan = Plan("onnxruntime", "fp32", "cpu")
    first = fast_forward(model, model, device=CPU, precision="auto", plan=plan)
    assert fast_forward(model, model, device=CPU, precision="auto", plan=plan) is first
    with torch.no_grad():
        model.body[0].weight.mul_(2)
    second = fast_forward(model, model, device=CPU, precision="auto", plan=plan)
    assert second is not first
    lq = torch.rand(1, 3, 20, 20)
    assert _max_abs(second, model, lq) < 1e-4


def test_disk_cache_for_every_model(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    model = tiny_vgg()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # under the old on-disk threshold: kept now too
    first = accel.exported_graph(model)
    files = list((tmp_path / "cache" / "onnx").glob("srvggnet-compact-*.onnx"))
    assert len(files) == 1 and files[0].read_bytes() == first
    monkeypatch.setattr("srhub.export.export_onnx", lambda *a, **k: pytest.fail("exported again"))
    assert accel.exported_graph(model) == first
    other = tiny_vgg()  # other random weights: another key
    assert accel.weights_hash(other) != accel.weights_hash(model)


def test_conv_flops_counts_by_hand():
    model = srhub.SRVGGNetCompact(scale=2, num_features=4, num_convs=1)
    h, w = 10, 6
    expected = 2 * h * w * 9 * (3 * 4 + 4 * 4 + 4 * 12)
    assert accel.conv_flops(model, (1, 3, h, w)) == expected


def test_compiling_in_two_threads_keeps_the_process_locale(monkeypatch):
    """OpenVINO's compile_model sets the process-wide locale to "C" and back. Two compiles at once
    (a served app's two requests, or a compile ahead beside a first call) interleave those calls,
    and the process could be left in the C locale for good, where Python's open() defaults to
    ASCII. srhub compiles one graph at a time: here each compile is slowed down so that two
    unguarded ones would overlap, and the most seen at once is counted."""
    ov = pytest.importorskip("openvino")
    import locale
    import threading
    import time

    real_compile, guard = ov.Core.compile_model, threading.Lock()
    in_flight, most = [0], [0]

    def slow_compile(self, *args, **kwargs):
        with guard:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.02)
            return real_compile(self, *args, **kwargs)
        finally:
            with guard:
                in_flight[0] -= 1

    monkeypatch.setattr(ov.Core, "compile_model", slow_compile)
    before = locale.setlocale(locale.LC_ALL)
    runners = [accel._OpenVINORunner(accel.exported_graph(tiny_vgg()), precision="fp32", threads=1, max_static=8)
               for _ in range(2)]
    errors = []

    def work(runner, offset):
        try:
            for size in range(12, 24, 2):  # each shape twice: a dynamic call, then a static compile
                lq = torch.rand(1, 3, size + offset, size)
                runner(lq), runner(lq)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(runner, offset)) for offset, runner in enumerate(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(len(runner.static) for runner in runners) == 12  # every compile really happened
    assert most[0] == 1
    assert locale.setlocale(locale.LC_ALL) == before
