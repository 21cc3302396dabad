// (not written yet)
#include "common.h"

namespace tg {

void register_lstm(py::module_&) {}

}  // namespace tg
