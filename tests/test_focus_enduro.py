"""Enduro's objects in every phase of the day, the car-near split and the lecture's table, on synthetic frames."""

import numpy as np
import pytest

from heed.analysis import AnalysisError
from heed.analysis.focus import (
    ENDURO_NEAR_ROWS,
    GAME_OBJECTS,
    enduro_car_near,
    enduro_objects,
    focus_summary,
    format_split,
    object_masks,
    split_scores,
)

GRASS, SNOW, DUSK, NIGHT, FOG = (0, 68, 0), (236, 236, 236), (20, 60, 0), (0, 0, 0), (74, 74, 74)
PLAYER_GREY = (192, 192, 192)
BLUE, YELLOW, PINK = (66, 72, 200), (162, 162, 42), (184, 70, 162)


def enduro_frame(background=GRASS, cars=(), player_col: int | None = 72) -> np.ndarray:
    """A synthetic Enduro screen: sky, the road area in ``background``, road edges drawn as thin
    lines in the player's grey, the player's 11x16 car at rows 141-151, ``cars`` as
    ``(top, left, height, width, colour)`` blocks and a coloured dashboard below the road."""
    rgb = np.zeros((210, 160, 3), np.uint8)
    rgb[:51] = (45, 50, 184)
    rgb[51:155, 8:] = background
    rgb[165:185, 50:110] = (167, 26, 26)  # the dashboard: coloured, but below the road area
    for r in range(64, 155):
        rgb[r, 80 - (r - 64) // 2] = rgb[r, 80 + (r - 64) // 2] = PLAYER_GREY
    if player_col is not None:
        rgb[141:152, player_col : player_col + 16] = PLAYER_GREY
    for top, left, height, width, colour in cars:
        rgb[top : top + height, left : left + width] = colour
    return rgb


def block(top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((210, 160), bool)
    mask[top : top + height, left : left + width] = True
    return mask


@pytest.mark.parametrize("background", [GRASS, SNOW, DUSK, NIGHT, FOG], ids=["day", "snow", "dusk", "night", "fog"])
def test_enduro_objects_in_every_phase_of_the_day(background):
    near_car, far_car = (118, 60, 8, 14, BLUE), (80, 84, 5, 8, YELLOW)
    objects = enduro_objects(enduro_frame(background, [near_car, far_car]))
    np.testing.assert_array_equal(objects["player_car"], block(141, 72, 11, 16))  # not the road's grey edges
    np.testing.assert_array_equal(objects["other_cars"], block(118, 60, 8, 14) | block(80, 84, 5, 8))
    np.testing.assert_array_equal(objects["car_ahead"], block(118, 60, 8, 14))  # the nearer one only
    assert objects["horizon_band"][45:66, 8:].all() and objects["horizon_band"].sum() == 21 * 152


def test_tail_lights_at_night_are_one_car_and_an_empty_road_has_none():
    lights = [(120, 60, 2, 3, PINK), (120, 68, 2, 3, PINK), (90, 100, 2, 3, PINK)]
    objects = enduro_objects(enduro_frame(NIGHT, lights))
    np.testing.assert_array_equal(objects["car_ahead"], block(120, 60, 2, 3) | block(120, 68, 2, 3))
    empty = enduro_objects(enduro_frame(GRASS))
    assert not empty["other_cars"].any() and not empty["car_ahead"].any() and not enduro_car_near(empty)
    assert not enduro_objects(enduro_frame(GRASS, player_col=None))["player_car"].any()


def test_car_near_is_decided_by_the_rows_above_the_players_car():
    top = 141  # the player's car starts at row 141
    bottom_near = top - ENDURO_NEAR_ROWS
    assert enduro_car_near(enduro_objects(enduro_frame(cars=[(bottom_near - 5, 60, 6, 10, BLUE)])))
    assert not enduro_car_near(enduro_objects(enduro_frame(cars=[(bottom_near - 6, 60, 6, 10, BLUE)])))
    beside = enduro_objects(enduro_frame(cars=[(143, 100, 8, 12, YELLOW)]))
    assert enduro_car_near(beside)  # level with the player: a collision from the side
    far = enduro_objects(enduro_frame(cars=[(80, 84, 5, 8, YELLOW)]))
    assert enduro_car_near(far, near_rows=70) and not enduro_car_near(far)


def _lecture_frames():
    """Three frames with a car near, two with a car far and one with an empty road."""
    near = [enduro_frame(cars=[(110 + 4 * i, 50 + 10 * i, 8, 14, BLUE)]) for i in range(3)]
    far = [enduro_frame(SNOW, cars=[(80, 84 - 10 * i, 5, 8, YELLOW)]) for i in range(2)]
    return near + far + [enduro_frame(NIGHT)]


def test_the_lecture_split_of_maps_on_the_horizon_and_on_the_car_ahead():
    frames = _lecture_frames()
    masks = [object_masks(f, "ALE/Enduro-v5") for f in frames]
    horizon = np.stack([m["horizon_band"] for m in masks]).astype(float)
    ahead = np.stack([m["car_ahead"] for m in masks]).astype(float)
    ahead[-1, 83, 0] = 1.0  # the empty road: a map with somewhere (off both objects) to put its mass
    assert not (horizon * ahead).any()  # the two objects do not touch on the input grid
    summary = focus_summary("ALE/Enduro-v5", frames, {"value": horizon, "advantage": ahead})
    split = summary["split"]
    assert split["by"] == "car_near" and split["objects"] == ["horizon_band", "car_ahead"]
    yes, no = split["parts"]["yes"], split["parts"]["no"]
    assert (yes["frames"], no["frames"]) == (3, 3)
    horizon_area = horizon[0].mean()
    for part in (yes, no):
        assert part["value"]["horizon_band"]["mass"] == pytest.approx(1.0)
        assert part["value"]["horizon_band"]["focus"] == pytest.approx(1 / horizon_area)
        assert part["advantage"]["horizon_band"]["mass"] == 0.0
    assert yes["advantage"]["car_ahead"]["mass"] == pytest.approx(1.0) and yes["advantage"]["car_ahead"]["frames"] == 3
    assert no["advantage"]["car_ahead"]["frames"] == 2  # the empty road has no car ahead
    assert no["advantage"]["car_ahead"]["mass"] == pytest.approx(1.0) and yes["value"]["car_ahead"]["mass"] == 0.0
    uniform = np.ones_like(horizon)
    flat = focus_summary("enduro", frames, {"value": uniform})["split"]["parts"]
    for part in ("yes", "no"):
        for name in ("horizon_band", "car_ahead"):
            assert flat[part]["value"][name]["focus"] == pytest.approx(1.0)  # chance


def test_lecture_table_text_and_bad_flags():
    frames = _lecture_frames()[3:]  # no frame with a car near
    maps = {"value": np.ones((3, 84, 84)), "advantage": np.ones((3, 84, 84))}
    split = focus_summary("ALE/Enduro-v5", frames, maps)["split"]
    text = format_split(split)
    assert f"within {ENDURO_NEAR_ROWS} screen rows" in text
    yes_row = next(line for line in text.splitlines() if line.startswith("car_near: yes"))
    no_row = next(line for line in text.splitlines() if line.startswith("car_near: no"))
    assert yes_row.split()[2:] == ["0", "-", "-", "-", "-"]  # no frames: no numbers
    assert "(1.00x)" in no_row and no_row.split()[2] == "3"
    masks = [object_masks(f, "enduro") for f in frames]
    with pytest.raises(AnalysisError, match="one flag per frame"):
        split_scores(maps, masks, [True], GAME_OBJECTS["enduro"].split)
