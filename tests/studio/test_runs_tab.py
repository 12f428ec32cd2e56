"""The Runs tab's handlers, without a browser."""

from studio import runs_tab as tab


def test_every_run_is_listed_picked_and_opened_in_its_tab(store, tmp_path):
    rows, note = tab.on_refresh(store, tab.ALL)
    assert rows == [] and "No runs yet" in note
    chains, _ = store.add_job("revise", ["revise"], str(tmp_path / "c"), [])
    labels, _ = store.add_job("label", ["label"], str(tmp_path / "l"), [])
    sft, _ = store.add_job("sft", ["sft"], str(tmp_path / "s"), [])
    for job in (chains, labels, sft):  # as they are left once they ran
        store.set_job_status(job.id, "succeeded")
    rows, note = tab.on_refresh(store, tab.ALL)
    assert [r[0] for r in rows] == [sft.id, labels.id, chains.id] and note == ""
    assert rows[0][1].startswith("SFT") and str(tmp_path) not in rows[0][1]
    assert [r[0] for r in tab.on_refresh(store, "label")[0]] == [labels.id]
    details, button, picked = tab.on_pick(store, chains.id)
    assert (
        "chains" in details and button["value"] == "Open in the Chains tab" and picked == chains.id
    )
    tabs, chains_run, labels_run, pairs, values, _, watched, message = tab.on_open(
        store, chains.id, None
    )
    assert tabs.selected == "chains" and chains_run["value"] == str(tmp_path / "c")
    assert labels_run == {"__type__": "update"} and watched is None
    tabs, _, labels_run, _, _, _, _, _ = tab.on_open(store, labels.id, None)
    assert tabs.selected == "preferences" and labels_run["value"] == str(tmp_path / "l")
    tabs, *_, watched, _ = tab.on_open(store, sft.id, 99)
    assert tabs.selected == "train" and watched == sft.id
    assert "Pick a run" in tab.on_open(store, None, 5)[-1]
    assert "no longer" in tab.on_pick(store, 12345)[0]
