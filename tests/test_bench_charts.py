"""`make bench`'s quota chart: calls per sliding 1-s window, drawn from a small synthetic run."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from wababind_local import bench
from wababind_local.bench.charts import (
    CALLS_COLOUR,
    CHART_DPI,
    PANEL_SIZE_IN,
    THROTTLED_COLOUR,
    window_counts,
    window_curve,
    write_quota_chart,
)
from wababind_local.cams_simulator import max_in_window


@pytest.mark.parametrize(
    ("arrivals", "times", "counts"),
    [
        ([], [], []),
        ([0.0], [0.0, 1.0], [1, 0]),
        ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.5, 2.0], [1, 2, 2, 1, 0]),  # 0.0 leaves as 1.0 comes
        ([0.0, 0.0, 0.2], [0.0, 0.2, 1.0, 1.2], [2, 3, 1, 0]),  # two calls at once
        ([0.0, 3.0], [0.0, 1.0, 3.0, 4.0], [1, 0, 1, 0]),
    ],
)
def test_the_window_curve_steps_up_on_arrival_and_down_a_second_later(arrivals, times, counts):
    assert window_curve(arrivals) == (times, counts)


def test_the_curves_peak_is_the_benchs_max_in_any_window():
    rng = random.Random(11)
    for _ in range(200):
        arrivals = sorted(round(rng.uniform(0, 5), 2) for _ in range(rng.randrange(1, 40)))
        _, curve = window_curve(arrivals)
        assert max(curve) == max(window_counts(arrivals)) == max_in_window(arrivals)


def run(processes: int, call_times: list[tuple[float, bool]], batch: int = 10) -> bench.Run:
    throttled = sum(hit for _, hit in call_times)
    return bench.Run(
        latency_ms=50, batch=batch, processes=processes, wall_s=3.0,
        statuses=Counter(bound=len(call_times) - throttled), durations_s=[0.1],
        calls=len(call_times), throttled=throttled,
        max_window=max_in_window([at for at, _ in call_times]), call_times=call_times,
    )  # fmt: skip


def pixels(path: Path) -> tuple[tuple[int, int], set[tuple[int, int, int]]]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        size = image.size
        return size, {c for _, c in image.convert("RGB").getcolors(maxcolors=size[0] * size[1])}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def test_a_small_run_draws_one_panel_per_run_with_the_throttled_calls_marked(tmp_path):
    config = bench.parse_args(["--qps", "5", "--latencies-ms", "50", "--batches", "10"])
    config = bench.Config(**{**config.__dict__, "out": tmp_path / "results.md"})
    one = run(1, [(100 + i * 0.2, False) for i in range(10)])  # the limiter's pace: 5 a second
    burst = [(200 + i * 0.05, i >= 5) for i in range(8)]  # 8 in 0.4 s: the last 3 throttled
    shared = run(4, burst + [(201.5 + i * 0.25, False) for i in range(4)], batch=3)

    line = write_quota_chart(config, [one], shared)

    png = tmp_path / "quota.png"
    assert line == f"quota chart written to {png}"
    size, colours = pixels(png)
    assert size == (int(PANEL_SIZE_IN[0] * CHART_DPI), int(2 * PANEL_SIZE_IN[1] * CHART_DPI))
    assert rgb(CALLS_COLOUR) in colours and rgb(THROTTLED_COLOUR) in colours


def test_without_throttling_nothing_is_marked(tmp_path):
    config = bench.parse_args(["--qps", "5", "--latencies-ms", "50", "--batches", "10"])
    config = bench.Config(**{**config.__dict__, "out": tmp_path / "results.md"})
    write_quota_chart(config, [run(1, [(i * 0.2, False) for i in range(10)])], None)
    size, colours = pixels(tmp_path / "quota.png")
    assert size == (int(PANEL_SIZE_IN[0] * CHART_DPI), int(PANEL_SIZE_IN[1] * CHART_DPI))
    assert rgb(THROTTLED_COLOUR) not in colours


def test_no_chart_without_recorded_calls_or_a_folder_for_it(tmp_path):
    config = bench.parse_args(["--qps", "5", "--latencies-ms", "50", "--batches", "10"])
    to_folder = bench.Config(**{**config.__dict__, "out": tmp_path / "results.md"})
    assert "no run recorded" in write_quota_chart(to_folder, [run(1, [])], None)
    to_null = bench.Config(**{**config.__dict__, "out": Path("/dev/null")})
    assert "not a file" in write_quota_chart(to_null, [run(1, [(0.0, False)])], None)
    assert not (tmp_path / "quota.png").exists() and not Path("/dev/quota.png").exists()
