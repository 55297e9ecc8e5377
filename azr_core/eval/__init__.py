"""Evaluation: the paper's benchmarks, graded the way the field grades them, and the promotion gate.

benchmarks   the data files and their items (ids, questions, gold answers)
prompts      the paper's evaluation templates
answers      taking the answer (or program) out of a completion
scoring      grading one benchmark's completions; pass@k
codetests    HumanEval+/MBPP+ tests in the sandbox, evalplus's time limits and comparison
mathgrade    math-verify in a child process
run          `azr eval run`: generate, grade, write the evals table, log to MLflow
store        the evals table
promotion    challenger/champion aliases, the paired test, rollback
config       EvalConfig, PromotionConfig
"""
