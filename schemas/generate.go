package schemas

// The sample data under data/ is generated from the example definitions.
//go:generate go run ./sample/cmd/gensample -out data .
