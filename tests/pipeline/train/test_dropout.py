import torch

from pipeline.train.dropout import LEVELS, QuickDropout, quicken
from tests.tiny import fresh_tiny_model


def test_it_drops_p_of_the_elements_and_keeps_the_expected_value():
    drop = QuickDropout(0.05).train()
    x = torch.ones(64, 128, 96)
    y = drop(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.05) < 0.002  # 786k draws: within ~9 standard deviations of p
    assert abs(y.mean().item() - 1.0) < 0.003
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, LEVELS / (LEVELS - round(0.05 * LEVELS))))


def test_torch_seed_decides_the_mask_and_gradients_flow_through_the_kept_elements():
    drop = QuickDropout(0.3).train()
    x = torch.randn(4, 50, 32, requires_grad=True)
    torch.manual_seed(7)
    first = drop(x)
    torch.manual_seed(7)
    again = drop(x)
    other = drop(x)  # the generator moved on: another mask
    assert torch.equal(first, again) and not torch.equal(first, other)
    first.sum().backward()
    assert torch.equal(x.grad != 0, first != 0)


def test_eval_mode_and_p_zero_pass_the_input_through():
    x = torch.randn(3, 5)
    assert QuickDropout(0.5).eval()(x) is x
    assert QuickDropout(0.0).train()(x) is x


def test_every_lora_dropout_of_a_peft_model_is_swapped_and_training_still_learns():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        fresh_tiny_model().model,
        LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]),
    )
    layers = model.base_model.model.config.num_hidden_layers
    assert quicken(model) == 2 * layers
    drops = [m for m in model.modules() if isinstance(m, QuickDropout)]
    assert len(drops) == 2 * layers and all(d.p == 0.1 for d in drops)
    assert not any(type(m) is torch.nn.Dropout and m.p == 0.1 for m in model.modules())
    model.train()
    ids = torch.randint(5, 100, (2, 12))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
