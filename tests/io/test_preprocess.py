import pytest
import torch
import torch.nn.functional as F

from coldstream.errors import InputError, InputTypeError
from coldstream.io.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames


def test_uint8_and_float_inputs_agree():
    frames = torch.randint(0, 256, (3, 48, 80, 3), dtype=torch.uint8)
    a = preprocess_frames(frames, size=32)
    b = preprocess_frames(frames.permute(0, 3, 1, 2).float() / 255, size=32)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)


def test_short_side_resize_then_centre_crop_by_hand():
    # 40x80 landscape frame -> short side 20 -> 20x40 -> centre crop columns 10..30.
    x = torch.rand(1, 3, 40, 80)
    out = preprocess_frames(x, size=20, mean=None, std=None)
    expected = F.interpolate(x, size=(20, 40), mode="bilinear", align_corners=False)[..., :, 10:30]
    torch.testing.assert_close(out, expected)


def test_portrait_frames_crop_rows():
    x = torch.rand(2, 3, 64, 32)
    out = preprocess_frames(x, size=32, mean=None, std=None)
    torch.testing.assert_close(out, x[:, :, 16:48, :])


def test_imagenet_normalisation():
    x = torch.full((1, 3, 16, 16), 0.5)
    out = preprocess_frames(x, size=16)
    for c in range(3):
        torch.testing.assert_close(out[0, c], torch.full((16, 16), (0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


@pytest.mark.parametrize(
    "frames, match",
    [
        (torch.zeros(8, 8, 3, dtype=torch.uint8), "single image"),
        (torch.zeros(1, 8, 8, 4, dtype=torch.uint8), r"\[T, H, W, 3\]"),
        (torch.zeros(1, 1, 8, 8), r"\[T, 3, H, W\]"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int32), "dtype"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    ],
)
def test_bad_frames_are_rejected_with_the_expected_layout(frames, match):
    with pytest.raises((InputError, InputTypeError), match=match):
        preprocess_frames(frames, size=8)
