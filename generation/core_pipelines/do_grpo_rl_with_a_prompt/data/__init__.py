"""Stage 2, the data: rows sampled from the datasets and turned into prompts with reference answers.

- sampling.py    seeded sampling of each dataset's share of total_rows (big files are never loaded whole)
- formats.py     readers for JSON, JSONL and Parquet files
- hub.py         hub ids and dataset directories, through 🤗 datasets
- columns.py     row layouts (ShareGPT, messages, verl, prompt/completion, ...): prompt, answer, other columns
- truncation.py  prompts longer than max_prompt_length: early turns dropped, text cut, or the row dropped
"""
