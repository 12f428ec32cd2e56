"""The Runs tab's handlers, without a browser."""

from studio.tabs import runs as tab


def test_every_run_is_listed_picked_and_opened_in_its_tab(store, tmp_path):
    listed = tab.on_refresh(store, tab.ALL)
    assert listed["table"] == [] and "No runs yet" in listed["message"]
    chains, _ = store.add_job("revise", ["revise"], str(tmp_path / "c"), [])
    labels, _ = store.add_job("label", ["label"], str(tmp_path / "l"), [])
    sft, _ = store.add_job("sft", ["sft"], str(tmp_path / "s"), [])
    for job in (chains, labels, sft):  # as they are left once they ran
        store.set_job_status(job.id, "succeeded")
    listed = tab.on_refresh(store, tab.ALL)
    rows = listed["table"]
    assert [r[0] for r in rows] == [sft.id, labels.id, chains.id] and listed["message"] == ""
    assert rows[0][1].startswith("SFT") and str(tmp_path) not in rows[0][1]
    assert [r[0] for r in tab.on_refresh(store, "label")["table"]] == [labels.id]
    pick = tab.on_pick(store, chains.id)
    details, button, picked = pick["details"], pick["open_button"], pick["picked"]
    assert (
        "chains" in details and button["value"] == "Open in the Chains tab" and picked == chains.id
    )
    opened = tab.on_open(store, chains.id, None)
    assert set(opened) == {"tabs", "chains_run", "message"}  # the other pickers stay as they are
    assert opened["tabs"].selected == "chains"
    assert opened["chains_run"]["value"] == str(tmp_path / "c")
    assert opened["chains_run"]["choices"] == [str(tmp_path / "c")]
    opened = tab.on_open(store, labels.id, None)
    assert opened["tabs"].selected == "preferences"
    assert opened["labels_run"]["value"] == str(tmp_path / "l")
    assert opened["labels_run"]["choices"] == [tab.STUDIO_RUN, str(tmp_path / "l")]
    opened = tab.on_open(store, sft.id, 99)
    assert opened["tabs"].selected == "train" and opened["train_watched"] == sft.id
    refused = tab.on_open(store, None, 5)
    assert list(refused) == ["message"] and "Pick a run" in refused["message"]
    gone = tab.on_pick(store, 12345)
    assert "no longer" in gone["details"] and gone["picked"] is None
