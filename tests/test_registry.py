"""One way to build a component by name: encoders, cores, readouts and tasks all come from a Registry."""

from __future__ import annotations

import pytest

from coldstream.errors import ConfigError
from coldstream.model import CORES, ENCODERS, READOUTS, build_core
from coldstream.registry import Registry
from coldstream.train.tasks import TASKS


def test_every_component_kind_is_registered_by_name():
    assert set(ENCODERS.names()) == {
        "dinov3_vits16", "dinov3_vitb16", "dinov3_vitl16", "efficientnet_lite0", "efficientnet_lite0_s16"
    }  # fmt: skip
    assert set(CORES.names()) == {"rvmrnn", "mamba", "mambamix", "gmmix", "identity", "meanpool"}
    streaming = {"ssv2", "linear", "waymo", "pt", "scannet", "nuscenes"}
    offline = {"ssv2_offline", "waymo_offline", "pt_offline", "scannet_offline"}
    assert set(READOUTS.names()) == streaming | offline
    assert set(TASKS.names()) == {
        "direction",
        "crop_tracks",
        "arrow",
        "csv",
        "ssv2",
        "box_tracking",
        "point_tracking",
        "depth",
        "camera_pose",
    }
    assert CORES.canonical("MMix") == "mambamix" and READOUTS.canonical("depth") == "scannet"
    assert build_core("m", 8, num_layers=1).kind == "mamba"


def test_unknown_names_and_options_are_refused_with_what_is_known():
    reg = Registry("widget")

    @reg.register("round", aliases=("circle",))
    class Round:
        def __init__(self, size: int, colour: str = "red"):
            self.size, self.colour = size, colour

    assert reg.create("CIRCLE", 3, colour="blue").colour == "blue"
    assert reg.accepts("round", "colour") and not reg.accepts("round", "shade")
    with pytest.raises(ConfigError, match="unknown widget 'square'; known: round \\(aliases: circle\\)"):
        reg.create("square", 1)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['shade'\]; accepted: \['colour', 'size'\]"):
        reg.create("round", 1, shade=2)
    with pytest.raises(ConfigError, match="registered already"):
        reg.register("circle")(Round)
