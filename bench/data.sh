# Sourced by the bench scripts (run from the project root): `extract SET...` unpacks the train and
# test splits of each named set from ../shared/data into the git-ignored data/, once.
extract() {
  local set split
  for set in "$@"; do
    for split in train test; do
      [ -d "data/$set/$split" ] || { mkdir -p data && tar -xf "../shared/data/$set-$split.tar" -C data; }
    done
  done
}
