"""Captions agree with the clip metadata; prompt expansion is deterministic and strict."""

import re

import numpy as np
import pytest

from minisora.captions import describe, expand_prompt, heading, parse_prompt, region, short_caption
from minisora.data import PRESETS, Motion, MovingMNIST, get_config

WALL_WORDS = {"top": (0, -1), "bottom": (0, 1), "left": (1, -1), "right": (1, 1)}


def one_digit_motion(positions, velocities, bounces):
    as_array = lambda a, dtype: np.asarray(a, dtype)[:, None, :]  # (T, 2) -> (T, K=1, 2)
    return Motion(as_array(positions, np.float32), as_array(velocities, np.float32), as_array(bounces, np.int8))


def test_short_caption():
    assert short_caption([3]) == "3"
    assert short_caption([3, 7]) == "3 and 7"
    assert short_caption([3, 7, 1]) == "3, 7 and 1"


@pytest.mark.parametrize("vy, vx, word", [(0, 1, "right"), (-1, 0, "up"), (1, 0, "down"), (0, -2, "left"),
                                          (-1, 1, "up and right"), (2, 2.2, "down and right"), (0, 0, None)])
def test_heading_uses_screen_coordinates(vy, vx, word):
    assert heading(vy, vx) == word


def test_regions_are_thirds_of_the_canvas():
    assert region(5, 5, 64, 64) == "at the top left"
    assert region(32, 32, 64, 64) == "in the middle"
    assert region(63, 64, 64, 128) == "at the bottom"
    assert region(30, 127, 64, 128) == "on the right"


def test_description_of_a_known_motion():
    config = get_config("standard", num_digits=1, num_frames=4)
    motion = one_digit_motion(positions=[[10, 30], [13.6, 33.4], [17, 36], [20, 33]],
                              velocities=[[3.4, 1], [3.4, 1], [3.4, -1], [3.4, -1]],
                              bounces=[[0, 0], [0, 0], [0, 1], [0, 0]])
    assert describe([8], motion, config) == ("an 8 starts on the right and moves down, "
                                            "bouncing off the right wall.")
    corner = one_digit_motion([[0, 0]] * 2, [[3, 3], [-3, -3]], [[0, 0], [1, 1]])
    assert describe([1], corner, config).endswith("bouncing off the bottom right corner.")
    still = one_digit_motion([[0, 0]] * 2, [[0, 0]] * 2, [[0, 0]] * 2)
    assert describe([4], still, config) == "a 4 starts at the top left and stays still."


@pytest.mark.parametrize("preset", ["standard", "stochastic"])
def test_descriptions_match_metadata(preset):
    ds = MovingMNIST("train", 100, seed=3, config=preset, digits="mnist5k")
    for i in range(100):
        clip = ds.clip(i)
        sentences = clip.description.split(". ")
        assert len(sentences) == len(clip.labels)
        for k, sentence in enumerate(sentences):
            assert re.match(rf"an? {clip.labels[k]} starts", sentence)
            walls = re.findall(r"the (top|bottom|left|right)(?: (top|bottom|left|right))? (?:wall|corner)", sentence)
            said = [sorted(WALL_WORDS[w] for w in pair if w) for pair in walls]
            flags = clip.motion.bounces[1:, k]  # (T-1, 2): bounces after the first frame
            truth = [sorted((axis, int(s)) for axis, s in enumerate(f) if s) for f in flags if f.any()]
            assert said == truth, (sentence, flags)


def test_parse_prompt():
    assert parse_prompt("3 and 7") == [3, 7]
    assert parse_prompt("Three, seven and 1") == [3, 7, 1]
    with pytest.raises(ValueError, match=r"could not read \['dog'\]"):
        parse_prompt("3 and dog")
    with pytest.raises(ValueError, match="could not read any digit"):
        parse_prompt("and")


def test_expand_prompt_is_deterministic_and_faithful():
    text = expand_prompt("3 and 7", seed=4)
    assert text == expand_prompt("three and seven", seed=4)
    assert text != expand_prompt("3 and 7", seed=5)
    assert re.match(r"a 3 starts .*\. a 7 starts .*\.$", text)
    assert expand_prompt("5", config=PRESETS["stochastic"]).startswith("a 5 starts")
