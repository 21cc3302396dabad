// (not written yet)
#include "common.h"

namespace tg {

void register_conv(py::module_&) {}

}  // namespace tg
