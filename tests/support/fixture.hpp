// Reads the text fixtures written by the scripts in tests/fixtures/: records "name count" followed
// by count numbers.
#pragma once

#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dt {

class Fixture {
 public:
  explicit Fixture(const std::string& file) {
    const std::string path = std::string(DICYC_FIXTURE_DIR) + "/" + file;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open fixture " + path);
    std::string line;
    while (in >> std::ws && in.peek() == '#') std::getline(in, line);
    std::string name;
    std::size_t n;
    while (in >> name >> n) {
      std::vector<double> v(n);
      for (auto& x : v)
        if (!(in >> x)) throw std::runtime_error("fixture " + path + ": truncated record " + name);
      data_[name] = std::move(v);
    }
  }
  const std::vector<double>& operator[](const std::string& k) const {
    auto it = data_.find(k);
    if (it == data_.end()) throw std::runtime_error("fixture has no record " + k);
    return it->second;
  }
  double scalar(const std::string& k) const { return (*this)[k].at(0); }
  bool has(const std::string& k) const { return data_.count(k) != 0; }

 private:
  std::map<std::string, std::vector<double>> data_;
};

}  // namespace dt
