import pytest

from pipeline.config.commands import DPOJob, build_job
from pipeline.core.errors import DatasetError, JobError
from pipeline.data.preferences import LabelLog, Pair, Preference
from pipeline.train.dpo import dpo_examples, train_dpo
from pipeline.train.runtime import read_metrics


def write_labels(folder, n: int, p_good: float = 0.95):
    """Pairs where the 'gladly' answer is preferred with probability p_good, placed A or B."""
    prefs = []
    for i in range(n):
        good, bad = f"Yes, gladly, here is item {i}.", f"No, never, not item {i}."
        a_good = i % 2 == 0
        pair = Pair(f"Question {i}?", good if a_good else bad, bad if a_good else good)
        prefs.append(Preference(pair, p_good if a_good else 1 - p_good, (), "test", "h"))
    LabelLog(folder).append(prefs)
    return folder


def test_dpo_rows_take_the_ai_choice_and_drop_coin_flips(tmp_path):
    rows = dpo_examples(write_labels(tmp_path / "l", 4))
    assert all("gladly" in r["chosen"][0]["content"] for r in rows) and len(rows) == 4
    assert rows[0]["prompt"] == [{"role": "user", "content": "Question 0?"}]
    write_labels(tmp_path / "flat", 3, p_good=0.55)
    with pytest.raises(DatasetError, match="margin of at least 0.5"):
        dpo_examples(tmp_path / "flat", min_margin=0.5)
    with pytest.raises(JobError, match="label_smoothing must be in"):
        build_job(DPOJob, {"data": "x", "label_smoothing": 0.5})


def test_dpo_raises_the_chosen_margin(tmp_path, tiny_folder):
    data = write_labels(tmp_path / "labels", 8)
    job = DPOJob(
        model=str(tiny_folder),
        data=str(data),
        max_steps=10,
        batch_size=4,
        learning_rate=2e-2,
        beta=0.5,
        save_every=100,
    )
    adapter = train_dpo(job, tmp_path / "run")
    margins = [
        r["rewards/margins"] for r in read_metrics(tmp_path / "run") if "rewards/margins" in r
    ]
    assert len(margins) >= 8 and margins[-1] > margins[0] + 0.1
    assert (adapter / "adapter_config.json").exists() and "pairs" in (
        adapter / "README.md"
    ).read_text()


def test_dpo_stops_when_the_loss_explodes_and_saves_no_adapter(tmp_path, tiny_folder):
    from pipeline.train.runtime import TrainingDiverged

    data = write_labels(tmp_path / "labels", 8)
    job = DPOJob(
        model=str(tiny_folder),
        data=str(data),
        max_steps=6,
        batch_size=4,
        learning_rate=1e30,
        save_every=1,
    )
    with pytest.raises(TrainingDiverged, match="became NaN/inf at step"):
        train_dpo(job, tmp_path / "run")
    assert not (tmp_path / "run" / "adapter").exists()
