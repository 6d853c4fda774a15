// Writes the seed corpus of field_state_fuzz: encodings of states of every kind.
//   make_corpus DIR
#include <fstream>
#include <string>

#include "tandem/engine/codec.h"

using namespace tandem::engine;

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ReplicaId a, b;
  a.bytes[0] = 1;
  b.bytes[0] = 2;
  std::vector<FieldState> states(8);
  ApplyPut(states[0], {a, 1}, MakeHlc(1700000000000, 0), Value{std::string("Ann")});
  ApplyPut(states[1], {b, 1}, MakeHlc(1700000000001, 3), Value{2.5});
  Join(states[1], states[0]);  // siblings
  ApplyIncr(states[2], {a, 2}, MakeHlc(1700000000002, 0), 5);
  ApplyIncr(states[2], {a, 3}, MakeHlc(1700000000003, 0), -7);
  ApplyAdd(states[3], {a, 4}, MakeHlc(1700000000004, 0), Value{int64_t{3}});
  ApplyAdd(states[3], {a, 5}, MakeHlc(1700000000005, 0), Value{Bytes{"\x00\x01"}});
  states[4] = states[3];
  ApplyRemove(states[4], {b, 2}, MakeHlc(1700000000006, 0), Value{int64_t{3}});
  states[5] = states[2];
  ApplyDelete(states[5], {b, 3});
  ApplyPut(states[6], {b, 4}, MakeHlc(1700000000007, 0), Value{});
  Join(states[6], states[2]);  // type conflict
  ApplyPut(states[7], {a, 9}, MakeHlc(1700000000008, 0), Value{true});
  for (size_t i = 0; i < states.size(); ++i) {
    std::ofstream out(std::string(argv[1]) + "/seed" + std::to_string(i), std::ios::binary);
    out << EncodeFieldState(states[i]).value();
  }
  return 0;
}
