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


def test_a_finished_policy_is_exported_from_the_runs_tab(store, tmp_path, tiny_folder):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path / "sft-1"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_folder), LoraConfig(target_modules=["q_proj"])
    )
    model.save_pretrained(run / "adapter")
    sft, _ = store.add_job("sft", ["sft"], str(run), [])
    store.set_job_status(sft.id, "succeeded")
    chains, _ = store.add_job("revise", ["revise"], str(tmp_path / "c"), [])
    assert tab.on_pick(store, chains.id)["export_panel"]["visible"] is False  # not a policy
    picked = tab.on_pick(store, sft.id)
    assert picked["export_panel"]["visible"] is True and picked["export_name"] == "sft-1"
    refused = tab.on_export(store, sft.id, True, "fp32", "../outside")
    assert "Name the export" in refused["export_message"]
    refused = tab.on_export(store, sft.id, False, "bf16", "x")
    assert "dtype applies to a merged model" in refused["export_message"]
    done = tab.on_export(store, sft.id, True, "fp32", "sft-1-merged")
    folder = store.workspace / tab.MODELS_DIR / "sft-1-merged"
    assert str(folder) in done["export_message"] and "from_pretrained" in done["export_message"]
    assert (folder / "model.safetensors").exists() and (folder / "README.md").exists()
    again = tab.on_export(store, sft.id, True, "fp32", "sft-1-merged")  # never over an export
    assert "exists and is not empty" in again["export_message"]


def test_two_runs_compared_in_the_runs_tab(store, tmp_path):
    from tests.pipeline.runner.test_compare import trained_run

    a = trained_run(store, tmp_path / "a", 2e-4, [2.0, 1.5, 1.2])
    b = trained_run(store, tmp_path / "b", 1e-3, [2.0, 1.1, 0.9])
    offered = tab.on_refresh(store, tab.ALL)["compare_pick"]["choices"]
    assert [job_id for _, job_id in offered] == [b.id, a.id]  # finished runs, by name
    shown = tab.on_compare(store, [a.id, b.id])
    assert "1 settings differ" in shown["compare_view"]
    assert '<tr class="differs"><th>learning_rate</th>' in shown["compare_view"]
    plot = shown["compare_plot_0"]
    assert plot["title"] == "loss" and plot["visible"] is True
    assert sorted(set(plot["value"]["run"])) == sorted(
        r.name for r in tab.compare_runs(store, [str(a.id), str(b.id)]).runs
    )
    assert shown["compare_plot_1"]["visible"] is False  # one curve logged: one plot
    refused = tab.on_compare(store, [a.id])
    assert "two or more" in refused["compare_view"]
