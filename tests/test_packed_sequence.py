"""Variable-length batches, as nn.LSTM takes them: a PackedSequence (sorted or not) or a
padded batch with its lengths. Every sequence of the batch gets what it gets alone."""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from rim_rllib import RIM, Selection, pack

LENGTHS = [4, 7, 2, 7, 5]  # unsorted, with a tie and a short one
COMBINATIONS = list(itertools.product(["lstm", "gru"], [1, 2], [False, True]))


def sequences(input_size=3, lengths=LENGTHS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, input_size, generator=generator) for n in lengths]


def final_states(h_n, cell: str) -> list[torch.Tensor]:
    return [h_n] if cell == "gru" else list(h_n)


def initial_state(rim: RIM, batch: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    shape = (rim.num_layers * rim.num_directions, batch, rim.num_units * rim.hidden_size)
    h = torch.randn(shape, generator=generator)
    return h if rim.cell == "gru" else (h, torch.randn(shape, generator=generator))


def state_of(hx, b: int, cell: str):
    return hx[:, b:b + 1] if cell == "gru" else tuple(s[:, b:b + 1] for s in hx)


@pytest.mark.parametrize("cell, layers, bidirectional", COMBINATIONS)
@pytest.mark.parametrize("with_state", [False, True])
def test_each_packed_sequence_equals_the_sequence_alone(cell, layers, bidirectional,
                                                         with_state):
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, cell=cell, num_layers=layers, bidirectional=bidirectional).eval()
    seqs = sequences()
    packed = pack_padded_sequence(pad_sequence(seqs), torch.tensor(LENGTHS),
                                  enforce_sorted=False)
    hx = initial_state(rim, len(seqs)) if with_state else None
    out, h_n, mask = rim(packed, hx, return_mask=True)
    assert type(out) is type(packed) and type(mask) is type(packed)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    assert torch.equal(out.sorted_indices, packed.sorted_indices)
    out, lengths = pad_packed_sequence(out)
    mask, _ = pad_packed_sequence(mask)
    assert lengths.tolist() == LENGTHS
    for b, seq in enumerate(seqs):
        alone, h_alone, mask_alone = rim(seq.unsqueeze(1), state_of(hx, b, cell)
                                         if with_state else None, return_mask=True)
        torch.testing.assert_close(out[:len(seq), b], alone[:, 0], atol=1e-5, rtol=0)
        for packed_state, state in zip(final_states(h_n, cell), final_states(h_alone, cell)):
            torch.testing.assert_close(packed_state[:, b], state[:, 0], atol=1e-5, rtol=0)
        assert torch.equal(mask[:len(seq), b], mask_alone[:, 0])
        assert not mask[len(seq):, b].any()  # padding activates no unit


def test_a_sorted_batch_and_batch_first_pack_alike():
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, batch_first=True, bidirectional=True).eval()
    order = sorted(range(len(LENGTHS)), key=lambda b: -LENGTHS[b])
    seqs = [sequences()[b] for b in order]
    lengths = [LENGTHS[b] for b in order]
    packed = pack_padded_sequence(pad_sequence(seqs, batch_first=True), lengths,
                                  batch_first=True)                 # enforce_sorted=True
    assert packed.sorted_indices is None
    out, (h_n, _) = rim(packed)
    out, _ = pad_packed_sequence(out, batch_first=True)
    for b, seq in enumerate(seqs):
        alone, (h_alone, _) = rim(seq.unsqueeze(0))
        torch.testing.assert_close(out[b, :len(seq)], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(h_n[:, b], h_alone[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_through_a_packed_batch_are_the_sequences_gradients_summed(cell):
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, cell=cell, num_layers=2, bidirectional=True).eval()
    seqs = sequences()

    def loss(out, h_n):
        return out.pow(2).sum() + sum(s.sum() for s in final_states(h_n, cell))

    out, h_n = rim(pack_padded_sequence(pad_sequence(seqs), LENGTHS, enforce_sorted=False))
    loss(out.data, h_n).backward()
    packed = [p.grad.clone() for p in rim.parameters()]
    rim.zero_grad()
    for seq in seqs:
        out, h_n = rim(seq.unsqueeze(1))
        loss(out, h_n).backward()
    for got, expected in zip(packed, (p.grad for p in rim.parameters())):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_padded_input_with_lengths_is_the_packed_batch_padded():
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, bidirectional=True, selection=Selection(fatigue=1.0)).eval()
    seqs = sequences()
    padded = pad_sequence(seqs)
    out, (h_n, c_n, tired), mask = rim(padded, return_mask=True,
                                       lengths=torch.tensor(LENGTHS))
    packed_out, (packed_h, packed_c, packed_tired), packed_mask = rim(
        pack_padded_sequence(padded, LENGTHS, enforce_sorted=False), return_mask=True)
    expected_out, _ = pad_packed_sequence(packed_out)
    torch.testing.assert_close(out, expected_out)  # zeros at the padding
    torch.testing.assert_close(h_n, packed_h)
    torch.testing.assert_close(c_n, packed_c)
    torch.testing.assert_close(tired, packed_tired)
    assert torch.equal(mask, pad_packed_sequence(packed_mask)[0])
    for b, seq in enumerate(seqs):  # the tiredness after each sequence's own last step
        alone = rim(seq.unsqueeze(1))[1][2]
        torch.testing.assert_close(tired[:, b], alone[:, 0], atol=1e-6, rtol=0)


def test_padding_enters_no_usage_statistic():
    """What the padding holds, and how much of it there is, changes nothing: not the
    load-balancing loss, not the usage floor's bias, not the outputs."""
    torch.manual_seed(0)
    # training mode (the usage floor moves only then), no dropout (its draws depend on T)
    rim = RIM(3, 8, 5, 2, selection=Selection(usage_floor=0.1), input_dropout=0.0,
              comm_dropout=0.0)
    seqs = sequences()
    results = []
    for pad_value, extra in ((0.0, 0), (7.0, 3)):
        padded = pad_sequence(seqs, padding_value=pad_value)
        padded = torch.cat([padded, torch.full((extra, *padded.shape[1:]), pad_value)])
        bias = rim.cells[0].selection_bias.clone()
        out, _, stats = rim.train()(padded, lengths=torch.tensor(LENGTHS), return_stats=True)
        moved = rim.cells[0].selection_bias - bias
        rim.cells[0].selection_bias.copy_(bias)
        results.append((out[:max(LENGTHS)], stats.load_balance_loss().detach(), moved))
    (out_a, aux_a, moved_a), (out_b, aux_b, moved_b) = results
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(aux_a, aux_b)
    torch.testing.assert_close(moved_a, moved_b)


def test_a_pack_of_rims_runs_a_packed_batch_as_its_members_do():
    torch.manual_seed(0)
    rims = [RIM(3, 8, 5, k, bidirectional=True).eval() for k in (1, 3)]
    packed_rims = pack(rims).eval()
    batch = pack_padded_sequence(pad_sequence(sequences()), LENGTHS, enforce_sorted=False)
    out, (h_n, _), mask = packed_rims(batch, return_mask=True)
    assert out.data.shape == (sum(LENGTHS), 2, 2 * 5 * 8)       # (N, M, dirs*Kt*H)
    assert mask.data.shape == (sum(LENGTHS), 2, 2, 5)            # (N, M, L*dirs, Kt)
    for m, rim in enumerate(rims):
        alone, (h_alone, _), mask_alone = rim(batch, return_mask=True)
        torch.testing.assert_close(out.data[:, m], alone.data, atol=1e-5, rtol=0)
        torch.testing.assert_close(h_n[m], h_alone, atol=1e-5, rtol=0)
        assert torch.equal(mask.data[:, m], mask_alone.data)


def test_bad_lengths_are_named():
    rim = RIM(3, 8, 5, 2)
    x = torch.randn(7, 5, 3)
    batch = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    with pytest.raises(ValueError, match="a PackedSequence carries its lengths"):
        rim(batch, lengths=torch.tensor(LENGTHS))
    with pytest.raises(ValueError, match="pass lengths or valid, not both"):
        rim(x, valid=torch.ones(7, 5), lengths=torch.tensor(LENGTHS))
    with pytest.raises(ValueError, match=r"lengths must be 5 ints in 1..seq_len=7, one per "
                                         r"sequence of the batch, got \[4, 8, 2, 7, 5\]"):
        rim(x, lengths=torch.tensor([4, 8, 2, 7, 5]))
    with pytest.raises(ValueError, match="lengths must be 5 ints"):
        rim(x, lengths=torch.tensor([4.0, 7.0, 2.0, 7.0, 5.0]))
    with pytest.raises(ValueError, match="lengths needs batched input"):
        rim(torch.randn(7, 3), lengths=torch.tensor([7]))


def test_a_word_language_model_trains_with_rim_in_place_of_lstm():
    """PyTorch's word-language-model example with nn.LSTM swapped for RIM: embedding ->
    RIM -> linear, batches of BPTT chunks, the hidden state detached between them,
    gradient clipping; the loss falls."""
    torch.manual_seed(0)
    vocab, steps, batch = 12, 10, 8
    # A corpus with structure: each token follows from the previous one, with noise.
    corpus = [0]
    for _ in range(2000):
        corpus.append((corpus[-1] * 5 + 1) % vocab if torch.rand(1) < 0.9
                      else int(torch.randint(vocab, (1,))))
    data = torch.tensor(corpus[:len(corpus) // batch * batch]).view(batch, -1).t()  # (L, B)

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(vocab, 16)
            self.rnn = RIM(16, 16, 4, 2, input_dropout=0.0, comm_dropout=0.0)
            self.decoder = nn.Linear(4 * 16, vocab)

        def forward(self, tokens, hidden):
            output, hidden = self.rnn(self.encoder(tokens), hidden)
            return self.decoder(output), hidden

    model = LanguageModel()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, hidden = [], None
    for epoch in range(3):
        for i in range(0, data.shape[0] - 1 - steps, steps):
            tokens, targets = data[i:i + steps], data[i + 1:i + 1 + steps]
            if hidden is not None:  # truncated backpropagation through time
                hidden = tuple(h.detach() for h in hidden)
            logits, hidden = model(tokens, hidden)
            loss = nn.functional.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimiser.step()
            losses.append(loss.item())
    early, late = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    # from chance (ln 12 = 2.48) to well under it, and still falling after the first batches
    assert losses[0] > 2.2 and late < 0.6 * losses[0] and late < 0.8 * early, losses
