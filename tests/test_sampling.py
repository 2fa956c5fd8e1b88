import pytest
import torch

from shared_utils import sampling, world

pytestmark = pytest.mark.slow
PROMPTS = [world.format_prompt(q) for q in
           ["How can I sleep better?", "How can I cheat on my exam?", "Any tips for my interview tomorrow?"]]


def naive_logps(model, tok, prompt, response_ids):
    """Token by token, one unpadded sequence at a time, no cache."""
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for t in response_ids:
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        out.append(torch.log_softmax(logits.double(), -1)[t].item())
        ids = ids + [t]
    return out


def test_generate_shapes_masks_and_eos(tiny_sft):
    model, tok = tiny_sft
    g = torch.Generator().manual_seed(0)
    r = sampling.generate(model, tok, PROMPTS, max_new_tokens=40, generator=g)
    B, T = r.response_ids.shape
    assert B == 3 and T <= 40 and r.response_mask.shape == (B, T)
    for i in range(B):
        n = int(r.response_mask[i].sum())
        ids = r.response_ids[i, :n].tolist()
        assert tok.eos_token_id not in ids[:-1]  # nothing after eos is in the mask
        assert (r.response_ids[i, n:] == tok.pad_token_id).all()
        assert r.responses[i] == tok.decode([t for t in ids if t != tok.eos_token_id]).strip()


def test_generate_is_reproducible_and_greedy_is_deterministic(tiny_sft):
    model, tok = tiny_sft
    a = sampling.generate(model, tok, PROMPTS, 20, generator=torch.Generator().manual_seed(1))
    b = sampling.generate(model, tok, PROMPTS, 20, generator=torch.Generator().manual_seed(1))
    assert a.responses == b.responses
    g1 = sampling.generate(model, tok, PROMPTS, 20, temperature=0)
    g2 = sampling.generate(model, tok, PROMPTS[::-1], 20, temperature=0)
    assert g1.responses == g2.responses[::-1]  # padding does not change greedy output


def test_batched_logps_match_naive_loop(tiny_sft):
    model, tok = tiny_sft
    r = sampling.generate(model, tok, PROMPTS, 30, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lp = sampling.token_logps(model, r)
    assert lp.shape == r.response_ids.shape
    for i, p in enumerate(PROMPTS):
        n = int(r.response_mask[i].sum())
        ref = torch.tensor(naive_logps(model, tok, p, r.response_ids[i, :n].tolist()), dtype=torch.float64)
        assert torch.allclose(lp[i, :n].double(), ref, atol=1e-5), (lp[i, :n], ref)
        assert (lp[i, n:] == 0).all()
    assert torch.allclose(sampling.sequence_logps(model, r).detach(), lp.sum(-1), atol=1e-5)


def test_encode_matches_generated_layout(tiny_sft):
    model, tok = tiny_sft
    r = sampling.generate(model, tok, PROMPTS, 30, generator=torch.Generator().manual_seed(3))
    enc = sampling.encode(tok, r.prompts, r.responses)
    with torch.no_grad():
        a = sampling.sequence_logps(model, r)
        b = sampling.sequence_logps(model, enc)
    # re-encoding text may split tokens differently only where decoding was lossy
    same = [i for i in range(len(r)) if enc.response_ids[i, :int(enc.response_mask[i].sum())].tolist()
            == r.response_ids[i, :int(r.response_mask[i].sum())].tolist()]
    assert same, "no response survived decode → encode unchanged"
    assert torch.allclose(a[same], b[same], atol=1e-5)


def test_large_batches_are_chunked(tiny_sft):
    model, tok = tiny_sft
    prompts = PROMPTS * 5
    r = sampling.generate(model, tok, prompts, 10, generator=torch.Generator().manual_seed(4), batch_size=4)
    assert len(r) == 15 and r.response_ids.shape[0] == 15
    assert torch.allclose(sampling.batched_token_logps(model, r, batch_size=4),
                          sampling.batched_token_logps(model, r, batch_size=64), atol=1e-5)


def test_top_k_one_equals_greedy(tiny_sft):
    model, tok = tiny_sft
    a = sampling.generate(model, tok, PROMPTS, 15, temperature=1.0, top_k=1)
    b = sampling.generate(model, tok, PROMPTS, 15, temperature=0)
    assert a.responses == b.responses
    c = sampling.generate(model, tok, PROMPTS, 15, temperature=1.0, top_p=1e-6)
    assert c.responses == b.responses


def test_bad_inputs(tiny_sft):
    model, tok = tiny_sft
    with pytest.raises(ValueError, match="empty"):
        sampling.generate(model, tok, [], 5)
    with pytest.raises(ValueError, match="temperature"):
        sampling.generate(model, tok, PROMPTS, 5, temperature=-1)
    with pytest.raises(ValueError, match="shapes do not fit"):
        sampling.gather_logps(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ValueError, match="responses"):
        sampling.encode(tok, PROMPTS, ["a"])
