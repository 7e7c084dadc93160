"""Shared test fixtures: where ../shared is, the tutorial model, test models."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
SEED_MODEL = SHARED / "peers" / "seed" / "wake_word_stop_lite.tflite"
TEST_DATA = Path(__file__).resolve().parent / "data"
KWSD = [sys.executable, "-m", "kwsd"]


def need_shared():
    if not DATA.is_dir():
        pytest.skip(f"real recordings not found at {DATA} (clone with ../shared beside the repo)")


@pytest.fixture
def shared_data():
    need_shared()
    return DATA


@pytest.fixture
def seed_model_path():
    if not SEED_MODEL.is_file():
        pytest.skip(f"the tutorial model is not at {SEED_MODEL}")
    return SEED_MODEL


@pytest.fixture
def subprocess_env():
    """Environment for running ``python -m kwsd`` from the repo checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
