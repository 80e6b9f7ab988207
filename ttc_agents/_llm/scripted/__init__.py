"""A deterministic, offline LLM test double registered with LiteLLM as the provider ``scripted``.

It is *not* a model: it solves the arithmetic expression in a question exactly, then makes seeded,
question-dependent mistakes so that sampling, voting, verifiers and revision behave like they do on a
real model, with no network and at a few microseconds per sample::

    register_scripted_provider()
    response = await litellm.acompletion(
        model="scripted/arith", messages=[{"role": "user", "content": prompt}], n=4, temperature=0.8, seed=1
    )

Profiles
    ``scripted/arith`` (default difficulty), ``scripted/arith-easy`` (error rates x0.3) and
    ``scripted/arith-hard`` (error rates x2, capped at 0.9). ``scripted/pop-<setting>`` (e.g.
    ``scripted/pop-mathlike``) answers the same questions and roles from a synthetic population with
    documented knobs (difficulty mixture, conceptual errors, distractors, judge AUC, over-optimisation,
    revision fix/flip rates): see :mod:`ttc_agents._llm.population`. Everything below but "Difficulty" and
    the judges' score distributions holds for them too.

Roles
    The role is recognised from the last user message (the templates in ``prompts/*.txt``), checked in
    this order:

    1. ``judge_step``: a line that is exactly ``Steps:``.
    2. ``judge_answer``: a line that is exactly ``Solution:``.
    3. ``revise``: a line starting with ``Earlier attempts``.
    4. ``step_generate``: a line that is exactly ``Steps so far:``.
    5. ``generate``: anything else.

    The question is the rest of the last line starting with ``Problem:`` (the whole last user message
    when there is none). Sections (``Steps:``, ``Steps so far:``) are the lines after their header up to
    the next blank line; ``(none)`` means empty. ``Solution:`` and the earlier attempts run up to the
    template's closing question (or the end of the message).

Solutions
    The expression (integers or decimals, ``+ - * /``, parentheses, unary minus; ``×``, ``÷`` and ``−``
    are accepted too) is parsed by a small precedence parser and computed in evaluation order, one binary
    operation per line (``12 * 7 = 84``), ending with ``The answer is \\boxed{89}.`` Values are exact
    rationals: integers are written as integers, other values as a reduced fraction ``p/q``; as an
    operand a negative or fractional value is put in parentheses (``(89/5) - (-2) = 99/5``). A unary minus
    on a parenthesised expression is the step ``0 - v``. A question without an expression (or whose true
    computation divides by zero) is answered ``The answer is \\boxed{0}.`` A step that divides by zero
    because of an earlier mistake writes ``= 0`` (and is wrong).

Difficulty
    For a question with ``k`` binary operations, ``M`` the largest absolute value among its literals and
    true intermediate results (numerator or denominator) and ``u`` a uniform hash of the question text::

        p(q) = clamp(sigmoid(-4.0 + 0.45 (k - 1) + 0.75 log10(1 + M) + 3.0 (u - 0.5)), 0.01, 0.6)

    ``p(q)`` is the per-step error probability at the usual sampling temperature 0.8. A profile scales it
    (capped at 0.9) and temperature ``T`` scales it by ``0.6 + 0.5 T`` (capped at 0.95). ``T = 0`` is
    greedy: the draws come from hashes of (question, step), so all choices are identical, independent of
    ``seed``, and a hard question can be wrong. Mistakes come from a small per-operator list of typical
    slips (off by one or ten, wrong operator, swapped operands), with a per-(question, step) favourite, so
    wrong answers often collide. Later steps carry the wrong value forward.

Randomness
    Sample ``i`` draws from ``random.Random`` seeded with a blake2b hash of (profile, seed, question,
    i, role salt); without a seed the literal ``"noseed"`` is used, so calls are still deterministic.

Tools
    A request with ``tools`` naming a calculator (one required string parameter) gets OpenAI-format tool
    calls with the question's expression until a tool result follows the last user turn, then the text
    answer ``The answer is \\boxed{<result>}.``; an answer schema (one required number) gets a call with
    the answer. Each call is wrong (malformed JSON or a slipped number) with a seeded per-question rate:
    see :mod:`ttc_agents._llm.scripted.tools`.

Tokens
    :func:`scripted_tokenize` splits text with ``[0-9]|[A-Za-z]+|\\s+|[^\\sA-Za-z0-9]``: every token has
    at least one character, so a count never exceeds the UTF-8 byte count. Prompt tokens are the sum over
    all messages' text contents; completion tokens are counted on the returned (truncated) text.
"""

from __future__ import annotations

from ttc_agents._llm.scripted.provider import (
    INPUT_COST_PER_TOKEN,
    OUTPUT_COST_PER_TOKEN,
    PROVIDER,
    SCRIPTED_PROFILES,
    ScriptedLLM,
    register_scripted_provider,
    scripted_parameter_count,
    scripted_prompt_tokens,
    scripted_respond,
)
from ttc_agents._llm.scripted.tokens import scripted_token_count, scripted_tokenize

__all__ = [
    "INPUT_COST_PER_TOKEN",
    "OUTPUT_COST_PER_TOKEN",
    "PROVIDER",
    "SCRIPTED_PROFILES",
    "ScriptedLLM",
    "register_scripted_provider",
    "scripted_parameter_count",
    "scripted_prompt_tokens",
    "scripted_respond",
    "scripted_token_count",
    "scripted_tokenize",
]
