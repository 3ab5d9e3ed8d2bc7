"""Tiny tokenizers for the test fixtures, built with the `tokenizers` library.

Two kinds:
- an uncased WordPiece tokenizer (BERT / DistilBERT style) over a hand-written vocabulary of
  a few hundred entries, so that some words of the test sentences are missing and split into
  ##-pieces;
- a byte-level BPE tokenizer (RoBERTa style) trained on a few invented sentences.

Both are saved as a full tokenizer.json with padding and truncation set to null.
"""

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Common English words covering most of the fixture sentences. Words such as "unbelievably",
# "screenplay", "overwrought", "cafe", "dragged", "cinematography" are deliberately absent
# so that they split into pieces.
BERT_WORDS = """
the a an and or but if then than so of to in on at by for with from as into about over under
after before again once up down out off very too more most less least much many few some any
all each every no not nor only own same just also even still yet here there when where why how
what which who whom this that these those i me my we our you your he him his she her it its they
them their is are was were be been being have has had having do does did doing can could will
would shall should may might must
film films movie movies story plot actor actors actress cast scene scenes ending end music score
director script acting character characters show series book review critic audience screen play
time year years day night man woman people world life thing way part moment minute minutes hour
good great bad best worst better worse fine nice wonderful awful terrible boring brilliant clever
funny sad dull slow fast long short beautiful ugly perfect poor strong weak smart silly real
happy angry love loved hate hated like liked enjoy enjoyed watch watched see saw seen think
thought feel felt make made go went come came get got take took give gave say said know knew
really quite rather truly totally simply well maybe perhaps never always often sometimes
wait nope yes sure guess surprisingly believe quality worth waste money again together
was pretty kind sort lot little big small new old first last next other another whole
""".split()

# Word-continuation pieces: common suffixes and fragments needed by the absent words above.
BERT_CONTINUATIONS = """
s es ed ing ly er est ness able ible ful less ment tion ion ity ive al ous ic y ish en ers
bel ieva believ ably play wr ought ged gg agg fe ema ato raphy ph og
""".split()

BERT_PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def bert_vocab():
    """The WordPiece vocabulary, in id order: specials, single chars, ##chars, suffixes, words."""
    vocab = list(BERT_SPECIALS)
    vocab += BERT_PUNCT
    vocab += [str(d) for d in range(10)]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += ["##" + str(d) for d in range(10)]
    vocab += ["##" + s for s in BERT_CONTINUATIONS]
    vocab += BERT_WORDS
    # word fragments that can start a word (for pieces such as "un", "screen", "over", "dr")
    vocab += ["un", "re", "dis", "over", "cinem", "dr", "caf"]
    seen, out = set(), []
    for v in vocab:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def bert_tokenizer(vocab_list):
    """A BERT-style tokenizer (lowercasing, accent stripping, WordPiece, [CLS]/[SEP] template)."""
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(BERT_SPECIALS)
    tok.no_padding()
    tok.no_truncation()
    return tok


ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

# Invented training text for the byte-level BPE (no external data).
ROBERTA_CORPUS = [
    "The film was wonderful and the actors were great.",
    "The movie was boring, slow and far too long.",
    "I loved the music but the ending felt rushed.",
    "What a clever, funny and surprisingly warm story!",
    "The plot made no sense at all, sadly.",
    "Nobody in the audience laughed at the jokes.",
    "A beautiful film with a strong cast and a great score.",
    "It was not good, it was not bad, it was just fine.",
    "The actress played her part with real warmth and humour.",
    "Honestly, I would watch this movie again tomorrow.",
    "The story was predictable and the dialogue was flat.",
    "Great acting, great music, great story.",
    "The director kept the scenes short and the pace fast.",
    "I think the critics were too kind to this one.",
    "Every minute of the second half dragged on and on.",
]


def roberta_tokenizer(vocab_size=400):
    """A RoBERTa-style byte-level BPE trained on ROBERTA_CORPUS (<s>=0, <pad>=1, </s>=2, <unk>=3)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=ROBERTA_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(ROBERTA_CORPUS, trainer=trainer)
    for i, s in enumerate(ROBERTA_SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")),
        ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    tok.no_padding()
    tok.no_truncation()
    return tok


# SentencePiece-style Unigram tokenizers (XLM-R, ALBERT, DeBERTa-v2/v3 ship these as
# tokenizer.json converted from their spm.model). Trained here on the same invented corpus.
UNIGRAM_CORPUS = ROBERTA_CORPUS + [
    "Wonderful acting, but the screenplay was overwrought.",
    "Believe it or not, the music was the best part.",
    "A dull, slow film; nobody enjoyed it.",
]


def unigram_tokenizer(kind, vocab_size=300):
    """A Unigram (SentencePiece-style, `▁` word marker) tokenizer.

    kind "xlmr": XLM-RoBERTa layout (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4), NFKC and
    collapsed spaces, template `<s> $A </s>` / `<s> $A </s> </s> $B </s>`.
    kind "deberta": DeBERTa-v2/v3 layout ([PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3, [MASK]=4), NFKC,
    cased, template as ALBERT's.
    kind "albert": ALBERT layout (<pad>=0, <unk>=1, [CLS]=2, [SEP]=3, [MASK]=4), lowercased and
    accents stripped, template `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B [SEP]` with type ids 0/1.
    """
    if kind == "xlmr":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        unk = "<unk>"
        norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    elif kind == "deberta":
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        unk = "[UNK]"
        norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    else:
        specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
        unk = "<unk>"
        norm = normalizers.Sequence(
            [normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
             normalizers.StripAccents(), normalizers.Lowercase()]
        )
    tok = Tokenizer(models.Unigram())
    tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token=unk, show_progress=False,
        shrinking_factor=0.75, max_piece_length=8,
    )
    tok.train_from_iterator(UNIGRAM_CORPUS, trainer=trainer)
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    if kind == "xlmr":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)],
        )
    else:
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    tok.no_padding()
    tok.no_truncation()
    return tok


def bpe_cls_tokenizer(vocab_size=400):
    """A byte-level BPE with BERT-style specials, as ModernBERT ships ([PAD]=0, [UNK]=1, [CLS]=2,
    [SEP]=3, [MASK]=4), template `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B [SEP]`."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(UNIGRAM_CORPUS, trainer=trainer)
    for i, s in enumerate(specials):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.no_padding()
    tok.no_truncation()
    return tok
