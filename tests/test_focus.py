"""Object focus: masks from known colours, scores on synthetic maps with a known answer."""

import numpy as np
import pytest

from heed.analysis import AnalysisError
from heed.analysis.focus import (
    focus_scores,
    focus_summary,
    game_objects,
    map_correlation,
    object_masks,
    stack_history,
    to_input_grid,
)


def _pong_frame(ball=(100, 80), paddle_row=90) -> np.ndarray:
    """A synthetic Pong screen: brown field, white walls and score, a 2x4 ball, both 4x16 paddles."""
    rgb = np.zeros((210, 160, 3), np.uint8)
    rgb[:] = (144, 72, 17)
    rgb[24:34] = rgb[194:] = (236, 236, 236)  # walls: white, like the ball, but outside the field
    rgb[2:10, 120:130] = (92, 186, 92)  # the agent's score digit: green, like its paddle
    if ball is not None:
        rgb[ball[0] : ball[0] + 4, ball[1] : ball[1] + 2] = (236, 236, 236)
    rgb[paddle_row : paddle_row + 16, 140:144] = (92, 186, 92)
    rgb[50:66, 16:20] = (213, 130, 74)
    return rgb


def test_pong_masks_find_ball_and_paddles_on_the_input_grid():
    masks = object_masks(_pong_frame(), "ALE/Pong-v5", margin=0)
    assert set(masks) == {"ball", "agent_paddle", "opponent_paddle"}
    rows, cols = np.nonzero(masks["ball"])
    # screen rows 100-103 -> input rows 40-41 (x 84/210); cols 80-81 -> 42 (x 84/160)
    assert set(rows) <= {39, 40, 41, 42} and set(cols) <= {41, 42, 43}
    rows, cols = np.nonzero(masks["agent_paddle"])
    assert rows.min() >= 35 and rows.max() <= 43 and set(cols) <= {73, 74, 75, 76}  # not the score digit
    assert not masks["ball"][10:14].any()  # the walls are not the ball
    assert not object_masks(_pong_frame(ball=None), "pong")["ball"].any()
    dilated = object_masks(_pong_frame(), "ALE/Pong-v5", margin=1)["ball"]
    assert dilated.sum() > masks["ball"].sum() and (dilated >= masks["ball"]).all()


def test_focus_of_a_map_on_the_object_and_of_a_uniform_map():
    frames = [_pong_frame(ball=(60 + 20 * i, 40 + 10 * i)) for i in range(3)]
    masks = [object_masks(f, "pong") for f in frames]
    on_ball = np.stack([m["ball"].astype(float) for m in masks])  # all mass on the ball
    uniform = np.ones((3, 84, 84))
    spec = game_objects("ALE/Pong-v5")
    hit = focus_scores(on_ball, masks, spec.key, spec.in_play)
    flat = focus_scores(uniform, masks, spec.key, spec.in_play)
    area = np.mean([m["ball"].mean() for m in masks])
    assert hit["objects"]["ball"]["focus"] == pytest.approx(1 / area)  # mass share 1 over area share
    assert hit["objects"]["ball"]["focus"] > 100
    assert hit["objects"]["opponent_paddle"]["focus"] == 0.0
    assert hit["peak_on_object"] == 1.0 and hit["peak_on_key"] == 1.0 and hit["peak_frames"] == 3
    for name in ("ball", "agent_paddle", "opponent_paddle"):
        assert flat["objects"][name]["focus"] == pytest.approx(1.0)  # chance
    assert flat["key"]["focus"] == pytest.approx(1.0)
    assert flat["peak_on_object"] == 0.0  # argmax of a flat map is cell (0, 0), on no object


def test_peak_rate_counts_only_frames_with_the_ball_in_play():
    frames = [_pong_frame(), _pong_frame(ball=None)]
    masks = [object_masks(f, "pong") for f in frames]
    maps = np.stack([masks[0]["ball"].astype(float), np.ones((84, 84))])
    scores = focus_scores(maps, masks, ("ball",), "ball")
    assert scores["peak_frames"] == 1 and scores["peak_on_object"] == 1.0
    assert scores["objects"]["ball"]["frames"] == 1


def test_focus_summary_and_correlation():
    frames = [_pong_frame(ball=(60 + 9 * i, 30 + 7 * i)) for i in range(4)]
    rng = np.random.default_rng(0)
    a = rng.random((4, 84, 84))
    summary = focus_summary("ALE/Pong-v5", frames, {"value": a, "advantage": 2 * a + 1})
    assert summary["value_advantage_correlation"] == pytest.approx(1.0)
    assert summary["key_objects"] == ["ball", "agent_paddle"]
    assert 0.5 < summary["value"]["key"]["focus"] < 2.0  # random noise is near chance
    assert map_correlation(a, -a) == pytest.approx(-1.0)
    assert focus_summary("ALE/Qbert-v5", frames, {"value": a}) is None
    with pytest.raises(AnalysisError, match="non-negative"):
        focus_scores(-a, [object_masks(f, "pong") for f in frames])
    with pytest.raises(AnalysisError, match="no object masks"):
        object_masks(frames[0], "ALE/Qbert-v5")


def test_breakout_and_enduro_masks():
    rgb = np.zeros((210, 160, 3), np.uint8)
    rgb[57:93, 8:152] = (66, 72, 200)  # bricks
    rgb[189:193, 60:76] = (200, 72, 72)  # paddle
    rgb[150:154, 90:92] = (200, 72, 72)  # ball
    rgb[189:195, 152:160] = (200, 72, 72)  # the right wall's mark at the paddle's height: not the paddle
    masks = object_masks(rgb, "ALE/Breakout-v5", margin=0)
    assert masks["paddle"][75:78].any() and not masks["paddle"][:70].any() and not masks["paddle"][:, 77:].any()
    assert masks["ball"].sum() >= 1 and not masks["ball"][75:].any() and masks["bricks"][25:35].all(axis=0)[5:60].all()
    road = np.zeros((210, 160, 3), np.uint8)
    road[51:155, 8:] = (0, 68, 0)  # grass
    for r in range(51, 155):  # road edges, one grey pixel each side
        road[r, 60 - (r - 51) // 4] = road[r, 100 + (r - 51) // 4] = (170, 170, 170)
    road[141:152, 70:84] = (192, 192, 192)  # the player's car
    road[100:106, 90:98] = (162, 134, 56)  # another car
    masks = object_masks(road, "ALE/Enduro-v5", margin=0)
    rows, cols = np.nonzero(masks["player_car"])
    assert set(rows) <= set(range(55, 62)) and set(cols) <= set(range(35, 45)) and len(rows) > 20  # not the edges
    assert masks["other_cars"][40:43, 47:52].any() and not masks["other_cars"][55:].any()
    assert masks["horizon_band"][20:25, 4:].all() and not masks["horizon_band"][:17].any()


def test_to_input_grid_any_coverage():
    mask = np.zeros((210, 160), bool)
    mask[0, 0] = True
    assert to_input_grid(mask, margin=0).sum() == 1 and to_input_grid(mask, margin=1).sum() == 4


def test_stack_history_unions_the_last_frames():
    frames = [_pong_frame(ball=(60 + 20 * i, 40 + 10 * i)) for i in range(5)]
    masks = [object_masks(f, "pong") for f in frames]
    stacked = stack_history(masks, 3)
    np.testing.assert_array_equal(stacked[0]["ball"], masks[0]["ball"])
    np.testing.assert_array_equal(stacked[4]["ball"], masks[2]["ball"] | masks[3]["ball"] | masks[4]["ball"])
    assert not (stacked[4]["ball"] & masks[1]["ball"]).any()
    on_old_ball = np.stack([masks[max(0, i - 2)]["ball"].astype(float) for i in range(5)])
    newest = focus_summary("pong", frames, {"value": on_old_ball}, history=1)["value"]
    stack = focus_summary("pong", frames, {"value": on_old_ball}, history=3)["value"]
    assert newest["peak_on_object"] == pytest.approx(1 / 5) and stack["peak_on_object"] == 1.0
