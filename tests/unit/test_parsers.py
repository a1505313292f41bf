"""Answer parsers: golden strings in the published formats, coordinate round trips, and
property tests that no text can make a parser raise or return an invalid answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pocketvl.contracts.answers import (
    TYPED_ANSWER_ADAPTER,
    BDDAnswer,
    Box,
    BoxesAnswer,
    ChoiceAnswer,
    DriveLMAnswer,
    LabelAnswer,
    ObjectRef,
    Quantity,
    TextAnswer,
    YesNoAnswer,
)
from pocketvl.contracts.tasks import TaskBase as AnyTask
from pocketvl.domains.driving import BDDTask, DriveLMTask
from pocketvl.domains.medical import MedicalChoiceTask, MedicalVqaTask
from pocketvl.domains.registry import REGISTRY
from pocketvl.domains.remote_sensing import RSCaptionTask, RSClassifyTask, RSGroundTask, RSVqaTask
from pocketvl.domains.spec import ParseContext
from pocketvl.vision.stitch import CAMERAS
from tests.support.stitch_geometry import camera_to_stitched

parse_answer = REGISTRY.parse

DRIVELM = DriveLMTask(question="What are the important objects in the current scene?")
CONTROL = BDDTask(predict="control")
LABELS = ["dense residential area", "forest", "sparse forest", "storage tank", "airport"]
CLASSIFY = RSClassifyTask(labels=LABELS)
GROUND = RSGroundTask(expression="the airplane on the left")
OPTIONS = ["Pneumonia", "Pleural effusion", "Normal", "Cardiomegaly"]
CHOICE = MedicalChoiceTask(question="What is the finding?", options=OPTIONS)
NO_SIZES = ParseContext()
IMAGE_640x480 = ParseContext(image_sizes=((640, 480),))

ALL_TASKS: list[AnyTask] = [
    DRIVELM,
    BDDTask(predict="action"),
    BDDTask(predict="justification"),
    CONTROL,
    RSVqaTask(question="Is there a road?"),
    CLASSIFY,
    GROUND,
    RSCaptionTask(),
    MedicalVqaTask(question="Is there a fracture?"),
    CHOICE,
]
CONTEXTS = [
    NO_SIZES,
    IMAGE_640x480,
    ParseContext(image_sizes=((1, 1), (0, 0)), camera_sizes={"CAM_FRONT": (0, 0)}),
    ParseContext(image_sizes=((0, 5),), camera_sizes={"CAM_BACK": (1920, 1080)}),
]


def parse_ok(task: AnyTask, text: str, context: ParseContext = NO_SIZES) -> Any:
    status, answer = parse_answer(task, text, context)
    assert status == "ok", answer
    return answer


def assert_unparsed(task: AnyTask, text: str, context: ParseContext = NO_SIZES) -> None:
    assert parse_answer(task, text, context) == ("unparsed", TextAnswer(text=text))


# --- DriveLM ---------------------------------------------------------------------------


def test_drivelm_refs_become_camera_pixels_by_the_stitch_geometry() -> None:
    text = (
        "There is a car <c1,CAM_FRONT,[512.3,420]> ahead and a truck <c2,CAM_BACK_LEFT,[100,700]>."
    )
    answer = parse_ok(DRIVELM, text)
    # c1, CAM_FRONT (col 1, row 0): x = (512.3/1000*2688 - 896)/896*1600 = 859.04 -> 859.0,
    # y = (420/1000*896 - 0)/448*900 = 756.0.
    # c2, CAM_BACK_LEFT (col 0, row 1): x = (100/1000*2688)/896*1600 = 480.0,
    # y = (700/1000*896 - 448)/448*900 = 360.0.
    assert answer.objects == [
        ObjectRef(tag="c1", camera="CAM_FRONT", x=859.0, y=756.0, x_norm=512.3, y_norm=420.0),
        ObjectRef(tag="c2", camera="CAM_BACK_LEFT", x=480.0, y=360.0, x_norm=100.0, y_norm=700.0),
    ]
    # Rewritten in DriveLM's native pixel form, as InternVL's evaluation hands it on.
    assert answer.text == (
        "There is a car <c1,CAM_FRONT,859.0,756.0> ahead"
        " and a truck <c2,CAM_BACK_LEFT,480.0,360.0>."
    )
    assert answer.choice is None


def test_drivelm_tolerates_spaces_and_clamps_points_outside_their_camera() -> None:
    # CAM_FRONT_RIGHT is col 2: x = (990/1000*2688 - 1792)/896*1600 = 1552.0;
    # y = 999 -> (895.104 - 0)/448*900 = 1798.2, clamped to the 900 px frame.
    answer = parse_ok(DRIVELM, "Watch < c3 , CAM_FRONT_RIGHT , [ 990 , 999 ] >.")
    assert answer.objects == [
        ObjectRef(tag="c3", camera="CAM_FRONT_RIGHT", x=1552.0, y=900.0, x_norm=990, y_norm=999)
    ]
    assert answer.text == "Watch <c3,CAM_FRONT_RIGHT,1552.0,900.0>."


def test_drivelm_uses_the_given_camera_size() -> None:
    # CAM_BACK (col 1, row 1) at 1920x1080: x = (500/1000*2688 - 896)/896*1920 = 960.0,
    # y = (750/1000*896 - 448)/448*1080 = 540.0.
    context = ParseContext(camera_sizes={"CAM_BACK": (1920, 1080)})
    answer = parse_ok(DRIVELM, "<c1,CAM_BACK,[500,750]>", context)
    assert (answer.objects[0].x, answer.objects[0].y) == (960.0, 540.0)


@pytest.mark.parametrize(
    "text",
    [
        "Native <c1,CAM_FRONT,1088.3,497.5> stays.",  # already pixels, as DriveLM writes them
        "Unknown <c1,CAM_ROOF,[500,500]> camera.",
        "Overflow <c1,CAM_FRONT,[1e999,5]> point.",
    ],
)
def test_drivelm_leaves_unconvertible_refs_in_the_text(text: str) -> None:
    answer = parse_ok(DRIVELM, text)
    assert answer == DriveLMAnswer(text=text, objects=[], choice=None)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("(C)", "C"),
        ("The answer is D", "D"),
        ("D. The ego vehicle is going straight. The ego vehicle is driving slowly.", "D"),
        ("A car is ahead of the ego vehicle.", None),
        ("No.", None),
        ("A.I. drives.", None),
    ],
)
def test_drivelm_choice_only_for_whole_letter_answers(text: str, letter: str | None) -> None:
    assert parse_ok(DRIVELM, text).choice == letter


def test_drivelm_empty_answer_is_unparsed() -> None:
    assert_unparsed(DRIVELM, "  \n")


@given(
    camera=st.sampled_from(CAMERAS),
    x_px=st.floats(0, 1600),
    y_px=st.floats(0, 900),
    decimals=st.sampled_from([None, 1, 0]),
)
def test_drivelm_pixel_to_model_to_pixel_round_trip(
    camera: str, x_px: float, y_px: float, decimals: int | None
) -> None:
    x_norm, y_norm = camera_to_stitched(camera, x_px, y_px)
    if decimals is not None:  # the model writes 0-1000 with few or no decimals
        x_norm, y_norm = round(x_norm, decimals), round(y_norm, decimals)
    ref = parse_ok(DRIVELM, f"<c1,{camera},[{x_norm},{y_norm}]>").objects[0]
    # One step of the model's grid is 2688/1000 stitched px = 4.8 camera px in x and
    # 896/1000 stitched px = 1.8 camera px in y; half a step plus the 0.1 rounding.
    step = 10.0 ** -(decimals if decimals is not None else 9)
    assert abs(ref.x - x_px) <= 4.8 * step / 2 + 0.05 + 1e-9
    assert abs(ref.y - y_px) <= 1.8 * step / 2 + 0.05 + 1e-9


# --- BDD ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "speed", "angle"),
    [
        ("Speed: 5.2; Turn angle: -3.1", 5.2, -3.1),
        ("speed 5.2 m/s, turning angle 3.1 degrees", 5.2, 3.1),
        ("The speed is 2.35 and the turning angle is 0.00", 2.35, 0.0),
        ("Turning angle: 12; Speed: 0", 0.0, 12.0),
    ],
)
def test_bdd_control_signals(text: str, speed: float, angle: float) -> None:
    assert parse_ok(CONTROL, text) == BDDAnswer(
        speed=Quantity(value=speed, unit="m/s"), turning_angle=Quantity(value=angle, unit="deg")
    )


@pytest.mark.parametrize(
    "text",
    [
        "Speed: 5.2",
        "Turn angle: 3",
        "Speed: nan; Turn angle: 1",
        "Speed: 1e999; Turn angle: 1",
        "The car slows down.",
        "",
    ],
)
def test_bdd_control_needs_both_finite_numbers(text: str) -> None:
    assert_unparsed(CONTROL, text)


def test_bdd_action_and_justification_are_the_text() -> None:
    action = parse_ok(BDDTask(predict="action"), " The car slows to a stop.\n")
    assert action == BDDAnswer(action="The car slows to a stop.")
    why = parse_ok(BDDTask(predict="justification"), "because the light is red")
    assert why == BDDAnswer(justification="because the light is red")
    assert_unparsed(BDDTask(predict="action"), " ")


# --- Remote sensing ----------------------------------------------------------------------


def test_rs_ground_box_in_original_pixels() -> None:
    text = "<ref>the airplane on the left</ref><box>[[100, 200, 550, 1000]]</box>"
    # 640x480: x = v/1000*640, y = v/1000*480 -> 64.0, 96.0, 352.0, 480.0.
    assert parse_ok(GROUND, text, IMAGE_640x480) == BoxesAnswer(
        boxes=[
            Box(
                label="the airplane on the left",
                x1=64.0,
                y1=96.0,
                x2=352.0,
                y2=480.0,
                norm=(100, 200, 550, 1000),
            )
        ]
    )


def test_rs_ground_reads_several_quads_bare_lists_and_reversed_corners() -> None:
    text = (
        "<ref>ships</ref><box>[[0,0,500,500],[900, 900, 1200, 960]]</box> "
        "and <box>[[10,20,30,40]]</box>, also [[740, 500, 260, 100]]"
    )
    boxes = parse_ok(GROUND, text, ParseContext(image_sizes=((1001, 333), (5, 5)))).boxes
    # 1001x333 (odd sizes), rounded to 0.1 px; 1200 lands on the border (clamped);
    # the last box is written reversed and comes back ordered.
    assert [(b.label, b.x1, b.y1, b.x2, b.y2, b.norm) for b in boxes] == [
        ("ships", 0.0, 0.0, 500.5, 166.5, (0, 0, 500, 500)),
        ("ships", 900.9, 299.7, 1001.0, 319.7, (900, 900, 1200, 960)),
        (None, 10.0, 6.7, 30.0, 13.3, (10, 20, 30, 40)),
        (None, 260.3, 33.3, 740.7, 166.5, (740, 500, 260, 100)),
    ]


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("<ref>plane</ref><box>[[1, 2, 3, 4]]</box>", NO_SIZES),  # no size: no pixels
        ("<ref>plane</ref><box>[[1, 2, 3, 4]]</box>", ParseContext(image_sizes=((0, 480),))),
        ("There is no airplane.", IMAGE_640x480),
        ("[1, 2, 3, 4]", IMAGE_640x480),  # single brackets: prose, not a box
        ("<box>[[1.5, 2, 3, 4]]</box>", IMAGE_640x480),  # not integers
        ("<box>[[-1, 2, 3, 4]]</box>", IMAGE_640x480),
    ],
)
def test_rs_ground_without_a_usable_box_is_unparsed(text: str, context: ParseContext) -> None:
    assert_unparsed(GROUND, text, context)


@given(
    size=st.tuples(st.integers(1, 8000), st.integers(1, 8000)),
    corners=st.tuples(*[st.floats(0, 1)] * 4),
)
def test_rs_box_pixel_to_model_to_pixel_round_trip(
    size: tuple[int, int], corners: tuple[float, float, float, float]
) -> None:
    width, height = size
    x1, x2 = sorted((corners[0] * width, corners[2] * width))
    y1, y2 = sorted((corners[1] * height, corners[3] * height))
    norm = [round(x1 / width * 1000), round(y1 / height * 1000)]
    norm += [round(x2 / width * 1000), round(y2 / height * 1000)]
    text = f"<ref>x</ref><box>[[{', '.join(map(str, norm))}]]</box>"
    box = parse_ok(GROUND, text, ParseContext(image_sizes=(size,))).boxes[0]
    # Half a step of the 1000-grid plus the 0.1 px rounding.
    for got, want, extent in ((box.x1, x1, width), (box.y1, y1, height)):
        assert abs(got - want) <= extent / 2000 + 0.05 + 1e-9
    for got, want, extent in ((box.x2, x2, width), (box.y2, y2, height)):
        assert abs(got - want) <= extent / 2000 + 0.05 + 1e-9


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("forest", "forest"),
        ("Forest.", "forest"),
        ("  DENSE   residential-area ", "dense residential area"),
        ("storage tanks", "storage tank"),
        ("Dense residential areas", "dense residential area"),
        ("The image shows an airport.", "airport"),
        ("It is a sparse forest.", "sparse forest"),  # the longer label wins over "forest"
    ],
)
def test_rs_classify_matches_one_label(text: str, label: str) -> None:
    assert parse_ok(CLASSIFY, text) == LabelAnswer(label=label)


@pytest.mark.parametrize(
    "text",
    [
        "beach",
        "forest or airport",
        "",
        "A long description that goes on and on about the many fields and roads and "
        "buildings before it finally says airport",
        "forests",  # would be fine alone, but the labels below make it ambiguous
    ],
)
def test_rs_classify_none_or_several_is_unparsed(text: str) -> None:
    task = CLASSIFY
    if text == "forests":
        task = RSClassifyTask(labels=["forest", "Forests"])
    assert_unparsed(task, text)


@pytest.mark.parametrize(
    ("task", "text", "answer"),
    [
        (RSVqaTask(question="Is there a road?"), "Yes", YesNoAnswer(value=True)),
        (RSVqaTask(question="Is it rural?"), "rural", TextAnswer(text="rural")),
        (RSCaptionTask(), " A harbour with ships. ", TextAnswer(text="A harbour with ships.")),
    ],
)
def test_rs_vqa_and_caption(task: AnyTask, text: str, answer: Any) -> None:
    assert parse_ok(task, text) == answer


# --- Medical -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes", YesNoAnswer(value=True)),
        ("yes.", YesNoAnswer(value=True)),
        ("Yes, there is a fracture of the radius.", YesNoAnswer(value=True)),
        ("**No**", YesNoAnswer(value=False)),
        ("no, the lungs are clear", YesNoAnswer(value=False)),
        ("There is no evidence of fracture.", TextAnswer(text="There is no evidence of fracture.")),
        ("No fracture is seen.", TextAnswer(text="No fracture is seen.")),
        ("Nodules in both lungs", TextAnswer(text="Nodules in both lungs")),
        ("Yesterday's film", TextAnswer(text="Yesterday's film")),
    ],
)
def test_medical_vqa_yes_no_only_from_a_leading_word(text: str, answer: Any) -> None:
    assert parse_ok(MedicalVqaTask(question="Is there a fracture?"), text) == answer


@pytest.mark.parametrize(
    "text",
    [
        "B",
        "B.",
        "(B)",
        "Answer: B",
        "The answer is B",
        "B. Pleural effusion",
        "pleural effusion.",
    ],
)
def test_medical_choice_letter_or_option_text(text: str) -> None:
    assert parse_ok(CHOICE, text) == ChoiceAnswer(letter="B", option="Pleural effusion")


@pytest.mark.parametrize(
    "text",
    [
        "E",  # past the last of four options
        "B. Cardiomegaly",  # the letter and the text disagree
        "b",
        "Pleural effusion or cardiomegaly",
        "",
    ],
)
def test_medical_choice_unreadable_is_unparsed(text: str) -> None:
    assert_unparsed(CHOICE, text)


def test_medical_choice_duplicate_options_are_ambiguous() -> None:
    task = MedicalChoiceTask(question="Which?", options=["Normal", "normal."])
    assert_unparsed(task, "Normal")
    assert parse_ok(task, "A") == ChoiceAnswer(letter="A", option="Normal")


# --- Contracts ---------------------------------------------------------------------------


def test_answer_json_shapes_match_the_spec() -> None:
    answer = parse_ok(DRIVELM, "A <c1,CAM_FRONT,[512.3,420]>")
    assert json.loads(answer.model_dump_json()) == {
        "kind": "drivelm",
        "text": "A <c1,CAM_FRONT,859.0,756.0>",
        "objects": [
            {"tag": "c1", "camera": "CAM_FRONT", "x": 859.0, "y": 756.0}
            | {"x_norm": 512.3, "y_norm": 420.0}
        ],
        "choice": None,
    }
    control = parse_ok(CONTROL, "Speed: 1; Turn angle: 2")
    assert json.loads(control.model_dump_json()) == {
        "kind": "bdd",
        "action": None,
        "justification": None,
        "speed": {"value": 1.0, "unit": "m/s"},
        "turning_angle": {"value": 2.0, "unit": "deg"},
    }
    box = parse_ok(GROUND, "<box>[[0,0,1000,1000]]</box>", IMAGE_640x480).boxes[0]
    assert json.loads(box.model_dump_json()) == {
        "label": None,
        "x1": 0.0,
        "y1": 0.0,
        "x2": 640.0,
        "y2": 480.0,
        "norm": [0, 0, 1000, 1000],
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "bdd", "speed": {"value": 1.0, "unit": "deg"}},
        {"kind": "bdd", "speed": {"value": float("nan"), "unit": "m/s"}},
        {"kind": "boxes", "boxes": [{"x1": 5, "y1": 0, "x2": 1, "y2": 1, "norm": [5, 0, 1, 1]}]},
        {"kind": "choice", "letter": "b", "option": "x"},
        {"kind": "label", "label": "x", "extra": 1},
        {"kind": "caption", "text": "x"},
    ],
)
def test_answer_contract_refuses_invalid_answers(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TYPED_ANSWER_ADAPTER.validate_python(bad)


# --- Properties: any text, any task ------------------------------------------------------

# Pieces of every format, glued at random: half-written references, tags, lists, numbers
# that are not finite, answer prefixes, labels and options.
FRAGMENTS = [
    *("<c", "<c1,", "CAM_FRONT", "CAM_BACK_LEFT", ",[", "]>", ">"),
    *("<ref>", "</ref>", "<box>", "</box>", "[[", "]]", "[", "]", ",", " ", "\n", "."),
    *("nan", "inf", "1e999", "-0", "Speed:", "Turn angle:", "speed is"),
    *("The answer is", "Answer:", "(", ")", "A", "B.", "Yes", "no,"),
    *("forest", "storage tanks", "Pleural effusion"),
]
NUMBERS = st.one_of(
    st.integers(-(10**8), 10**8).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.floats(-2000, 2000).map(lambda value: f"{value:.1f}"),
)
# Near-misses of the real formats, so the property run also reaches the conversions.
OBJECT_REFS = st.builds(
    "<c{},{},[{},{}]>".format,
    NUMBERS,
    st.sampled_from([*CAMERAS, "CAM_TOP", "cam_front"]),
    NUMBERS,
    NUMBERS,
)
COORDINATES = st.one_of(NUMBERS, *[st.integers(0, 1100).map(str)] * 3)
QUADS = st.lists(COORDINATES, min_size=4, max_size=4).map(lambda q: f"[{', '.join(q)}]")
BOX_LISTS = st.lists(QUADS, min_size=1, max_size=3).map(lambda qs: f"[{','.join(qs)}]")
PIECES = st.one_of(st.sampled_from(FRAGMENTS), NUMBERS, st.text(max_size=4), OBJECT_REFS, BOX_LISTS)
# Joined with or without spaces; short texts reach the whole-answer forms (letters, labels).
FRAGMENT_TEXT = st.builds(
    str.join, st.sampled_from(["", " "]), st.lists(PIECES, max_size=30)
) | st.builds(str.join, st.sampled_from(["", " "]), st.lists(PIECES, max_size=3))
NEAR_MISSES = st.one_of(
    st.builds("Speed: {}; Turn angle: {}".format, NUMBERS, NUMBERS),
    st.builds("<ref>{}</ref><box>{}</box>".format, st.text(max_size=5), BOX_LISTS),
    st.builds(
        "{}{} {}".format,
        st.sampled_from(["A", "B", "D", "E", "(B)", "b", "The answer is C"]),
        st.sampled_from([".", ")", ":", ""]),
        st.sampled_from([*OPTIONS, *LABELS, "", "yes", "no."]),
    ),
)
ANY_TEXT = st.one_of(st.text(), FRAGMENT_TEXT, NEAR_MISSES)
KINDS_OK: dict[str, set[str]] = {
    "drivelm": {"drivelm"},
    "bdd": {"bdd"},
    "vqa": {"yes_no", "text"},
    "classify": {"label"},
    "ground": {"boxes"},
    "caption": {"text"},
    "choice": {"choice"},
}


@pytest.mark.parametrize("task", ALL_TASKS, ids=repr)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT, context=st.sampled_from(CONTEXTS))
def test_any_text_gives_a_valid_answer(task: AnyTask, text: str, context: ParseContext) -> None:
    status, answer = parse_answer(task, text, context)
    assert status in {"ok", "unparsed"}
    assert TYPED_ANSWER_ADAPTER.validate_python(answer.model_dump()) == answer
    # JSON has no NaN or infinity: the dump must survive a strict round trip.
    assert TYPED_ANSWER_ADAPTER.validate_json(answer.model_dump_json()) == answer
    if status == "unparsed":
        assert answer == TextAnswer(text=text)
    else:
        assert answer.kind in KINDS_OK[task.type]
    if isinstance(answer, BoxesAnswer):
        width, height = context.image_sizes[0]
        assert all(b.x2 <= width and b.y2 <= height for b in answer.boxes)
