"""One self-play iteration as six stages (seed, propose, execute-validate, solve, reward, update) plus commit,
framework-free: Prefect tasks in `tasks/` call these functions and pass only small summaries between them."""
