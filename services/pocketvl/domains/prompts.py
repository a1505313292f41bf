"""The question text for each task, in the formats of the DA training and evaluation data
(internvl_facts.md sections 2.3-3). The ``<image>`` placeholders are added by the model."""

from __future__ import annotations

from string import ascii_uppercase

from pocketvl.contracts.tasks import (
    AnyTask,
    BDDTask,
    DriveLMTask,
    MedicalChoiceTask,
    MedicalVqaTask,
    RSCaptionTask,
    RSClassifyTask,
    RSGroundTask,
    RSVqaTask,
)

SHORT_ANSWER = "Answer the question using a single word or phrase."
BDD_QUESTIONS = {
    "action": "What is the action of the ego car?",
    "justification": "Why does the ego car do this?",
    "control": "Predict the speed and turning angle of the ego car in the next second.",
}


def lettered(options: list[str]) -> str:
    return "\n".join(
        f"{letter}. {text}" for letter, text in zip(ascii_uppercase, options, strict=False)
    )


def build_question(task: AnyTask) -> str:
    match task:
        case DriveLMTask() | MedicalVqaTask():
            return task.question
        case BDDTask():
            return BDD_QUESTIONS[task.predict]
        case RSVqaTask():
            return f"{task.question}\n{SHORT_ANSWER}"
        case RSClassifyTask():
            classes = ", ".join(task.labels)
            return (
                f"Classify the image within one of the given classes: {classes}. "
                "Answer with one word or short phrase."
            )
        case RSGroundTask():
            return f"Detect <ref>{task.expression}</ref>"
        case RSCaptionTask():
            return "Describe the image in detail."
        case MedicalChoiceTask():
            return (
                f"{task.question}\n{lettered(task.options)}\n"
                "Answer with the option's letter from the given choices directly."
            )
