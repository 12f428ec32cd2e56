from pipeline.core.textdiff import readable_diff, sentences, similarity, word_diff


def test_word_diff_pieces_join_back_into_both_texts():
    pieces = word_diff("the cat sat", "the dog sat down")
    assert ("del", "cat") in pieces and ("add", "dog") in pieces and ("add", " down") in pieces
    assert "".join(t for op, t in pieces if op != "del") == "the dog sat down"
    assert "".join(t for op, t in pieces if op != "add") == "the cat sat"


def test_a_rewrite_is_diffed_by_sentence_and_an_edit_by_word():
    before = "When choosing a lock pick you need skill and a tension wrench. Practise."
    after = "The safest option is to call a locksmith who can open it for you. Practise."
    unit, pieces = readable_diff(before, after)
    assert unit == "sentence" and similarity(before, after) < 0.5
    assert ("del", "When choosing a lock pick you need skill and a tension wrench. ") in pieces
    assert ("same", "Practise.") in pieces
    unit, pieces = readable_diff("the cat sat on the mat today", "the dog sat on the mat today")
    assert unit == "word" and ("add", "dog") in pieces
    assert sentences("One. Two?\nThree") == ["One. ", "Two?\n", "Three"]
