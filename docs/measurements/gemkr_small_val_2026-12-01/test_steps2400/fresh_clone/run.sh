set -x
cd /tmp/fresh_gemkr
t0=$(date +%s)
export OMP_NUM_THREADS=1
python -m mmrag.cli.prepare_assets llama_tokenizer 2>&1 | tail -1
python data_process/make_world.py --preset small --seed 0 --out dataset/world_small --workers 2 2>&1 | tail -2
echo "world+assets $(( $(date +%s) - t0 )) s"
python -m mmrag.cli.run_gemkr_seeing --prefix gemkr_seeing_small --out output/gemkr_seeing_small --jobs 2 --threads 1 --set evaluation.max_samples=null
echo "rc=$? total $(( $(date +%s) - t0 )) s"
